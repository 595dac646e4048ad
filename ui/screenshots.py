"""Render Chinwag's main screens with demo data to docs/screenshots/*.png.

    make screenshots                       (QT_QPA_PLATFORM=offscreen python -m ui.screenshots)
    python -m ui.screenshots --out DIR --scale 2

The demo is real: temporary profiles on 127.0.0.1 befriended through invites, the
conversation written into the demo profile's encrypted database, and the real main window
rendered offscreen in the light and dark themes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The demo never touches a real keyring: its keys live in files in a temporary folder.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"

import nacl.utils
from PySide6.QtCore import QPoint, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QApplication, QWidget

from messenger import IncomingMessage, MessageState, PeerService, ServiceConfig, Timing

if TYPE_CHECKING:
    from ui.views.main_window import MainWindow

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "screenshots"
WINDOW = QSize(1180, 760)


class DemoClock:
    """Today at 09:45 local time, plus whatever offset the script sets."""

    def __init__(self) -> None:
        today = dt.date.today()
        self.base = dt.datetime.combine(today, dt.time(9, 45)).timestamp()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base + self.offset + (time.monotonic() % 1) * 0.001


def at(days_ago: int, hh: int, mm: int) -> int:
    """Epoch milliseconds of HH:MM local time, `days_ago` days before today."""
    day = dt.date.today() - dt.timedelta(days=days_ago)
    return int(dt.datetime.combine(day, dt.time(hh, mm)).timestamp() * 1000)


T = TypeVar("T")


@dataclass
class Demo:
    root: Path
    me: PeerService
    friends: dict[str, PeerService] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # friend name -> contact id at me
    lamport: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    group_id: str = ""

    def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Write demo data on the service's database thread and wait for it. The service
        runs (search indexer, groups) and shares one SQLite connection between its database
        thread and small writes on this thread; a direct call here could land beside a job
        on that thread ("cannot commit - no transaction is active")."""
        return self.me.db.submit(fn, *args).result()

    def incoming(self, who: str, when_ms: int, body: str) -> None:
        cid = self.ids[who]
        self.lamport[cid] = self.lamport.get(cid, 0) + 1
        self.seq[cid] = self.seq.get(cid, 0) + 1
        message = IncomingMessage(
            nacl.utils.random(16), self.seq[cid], self.lamport[cid], when_ms, body
        )
        self.write(self.me.repo.store_incoming, [(cid, [message])], when_ms + 400)

    def outgoing(self, who: str, when_ms: int, body: str, state: MessageState) -> None:
        cid = self.ids[who]
        (record,) = self.write(self.me.repo.queue_outgoing_many, [(cid, body)], when_ms)
        self.lamport[cid] = record.lamport
        if state is not MessageState.QUEUED:
            self.write(self.me.repo.advance_states, cid, [record.msg_id], state)


FRIENDS = [
    # name, stays online, verified
    ("Alice Moreau", True, True),
    ("Ben Okafor", True, False),
    ("Chen Wei", False, False),
    ("Dana Kowalski", False, True),
    ("Eve Lindqvist", False, False),
    ("Farid Haddad", False, False),
]


async def build_demo(root: Path) -> Demo:
    clock = DemoClock()
    config = ServiceConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        timing=Timing(connect_timeout=2.0),
        dial_base=0.05,
        dial_cap=0.5,
    )
    me, _ = await PeerService.create_profile(
        root / "me",
        "Sam Taylor",
        None,
        config=config,
        clock=clock,
        rng=random.Random(7),  # noqa: S311  (a reproducible demo)
    )
    demo = Demo(root, me)
    for i, (name, _online, verified) in enumerate(FRIENDS):
        clock.offset = -3600.0 * (i * 7 + 1)  # each was last seen a while ago
        friend, _ = await PeerService.create_profile(
            root / f"friend{i}",
            name,
            None,
            config=config,
            clock=clock,
            rng=random.Random(i),  # noqa: S311
        )
        demo.friends[name] = friend
        code, _ = await friend.invites.create_invite()
        contact = await me.invites.accept_invite(code, verified=verified)
        demo.ids[name] = contact.id
        async with asyncio.timeout(10):
            both = (me.contacts.is_online, contact.id), (friend.contacts.is_online, me.contact_id)
            while not all(online(cid) for online, cid in both):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    clock.offset = 0.0
    for name, online, _ in FRIENDS:
        if not online:
            await demo.friends.pop(name).aclose()
    async with asyncio.timeout(10):
        offline = [demo.ids[n] for n, online, _ in FRIENDS if not online]
        while any(me.contacts.is_online(cid) for cid in offline):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    write_conversations(demo)
    return demo


async def build_group(d: Demo) -> str:
    """A real group: every demo contact a member, the online ones writing to it."""
    record = await d.me.groups.create_group("Lab 3.14", list(d.ids.values()))
    group_id = record.id
    writers = list(d.friends.values())
    async with asyncio.timeout(15):
        while not all(f.groups.get(group_id) is not None for f in writers):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    lines = [
        (0, "Morning! The new switch for the lab is in, I'll rack it after lunch."),
        (None, "Great. Does anything need to be offline while you do it?"),
        (1, "Only the printers, for ten minutes or so."),
        (0, "I'll post here when it's done. Whoever is away catches up from us anyway."),
    ]
    for who, body in lines:
        service = d.me if who is None else writers[who % len(writers)]
        await service.groups.send_text(group_id, body)
        await asyncio.sleep(0.05)
    async with asyncio.timeout(15):
        while await d.me.groups.repo_count(group_id) < len(lines):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        while not d.me.groups.delivery(group_id):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return record.id


def write_conversations(d: Demo) -> None:
    a, out, inc = "Alice Moreau", d.outgoing, d.incoming
    read, delivered = MessageState.READ, MessageState.DELIVERED
    inc(a, at(1, 18, 40), "Are we still on for the lab demo tomorrow?")
    out(a, at(1, 18, 42), "Yes! 10:00 in room 3.14. I'll bring the Raspberry Pis.", read)
    out(a, at(1, 18, 42), "Could you print the handouts?", read)
    inc(a, at(1, 18, 51), "Sure 👍")
    inc(a, at(0, 9, 12), "Morning! The printer on floor 2 is jammed again")
    inc(a, at(0, 9, 13), "Using the one in the library instead 🙄")
    out(a, at(0, 9, 20), "No rush. Here's the deck: https://wiki.lab.example/demo-day/slides", read)
    out(
        a,
        at(0, 9, 21),
        "And the plan for the afternoon:\n• 13:00 set-up\n• 14:00 talks\n• 16:30 pizza 🍕",
        read,
    )
    inc(
        a,
        at(0, 9, 34),
        "Perfect. Does the demo work without internet? The guest Wi-Fi here is awful.",
    )
    out(
        a,
        at(0, 9, 36),
        "That's the whole point: it only needs the LAN. No server, no accounts; our laptops "
        "find each other on the network and talk directly, end-to-end encrypted.",
        read,
    )
    inc(a, at(0, 9, 37), "🎉🎉")
    out(a, at(0, 9, 41), "See you at 10!", delivered)
    d.write(d.me.repo.mark_seen, d.ids[a])

    inc("Ben Okafor", at(0, 8, 58), "Hey Sam, can you show me your code later?")
    inc("Ben Okafor", at(0, 9, 2), "I'll scan it with my webcam so we're verified 🔐")
    out("Chen Wei", at(1, 16, 5), "Thanks, the build passes now ✅", read)
    d.write(d.me.repo.mark_seen, d.ids["Chen Wei"])
    inc("Dana Kowalski", at(3, 11, 20), "The projector in 3.14 needs an HDMI adapter")
    d.write(d.me.repo.mark_seen, d.ids["Dana Kowalski"])
    inc("Eve Lindqvist", at(4, 12, 2), "Lunch at 12:30? The new place on the corner")


def grab(widget: QWidget, overlays: tuple[QWidget, ...] = ()) -> QPixmap:
    """The window, with dialogs painted where they are over a dimmed window (offscreen
    there is no window manager to draw their frames)."""
    from ui import theme

    pixmap = widget.grab()
    if overlays:
        t = theme.current()
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(pixmap.rect(), QColor(0, 0, 0, 110 if t.dark else 70))
        origin = widget.mapToGlobal(QPoint(0, 0))
        for overlay in overlays:
            pos = overlay.mapToGlobal(QPoint(0, 0)) - origin
            rect = QRectF(pos.x(), pos.y(), overlay.width(), overlay.height())
            for spread in range(12, 0, -2):  # a soft shadow
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QColor(0, 0, 0, 10))
                painter.drawRoundedRect(
                    rect.adjusted(-spread, -spread + 4, spread, spread + 4), 14, 14
                )
            painter.setBrush(t.color("window"))
            painter.setPen(QPen(t.color("border"), 1))
            painter.drawRoundedRect(rect.adjusted(-0.5, -0.5, 0.5, 0.5), 10, 10)
            painter.save()
            path = QPainterPath()
            path.addRoundedRect(rect, 10, 10)
            painter.setClipPath(path)
            painter.drawPixmap(pos, overlay.grab())
            painter.restore()
        painter.end()
    return pixmap


async def settle(app: QApplication, seconds: float = 0.3) -> None:
    """Let the loop (Qt events included) run; never processEvents() inside a task."""
    del app
    await asyncio.sleep(seconds)


def dialogs(window: MainWindow, demo: Demo) -> list[tuple[str, Callable[[], QWidget]]]:
    """(shot name, factory) of each dialog worth a picture; imported lazily."""
    bridge = window.bridge

    def my_code() -> QWidget:
        from ui.views.my_code_dialog import MyCodeDialog

        return MyCodeDialog(bridge, window)

    def add_contact() -> QWidget:
        from ui.views.add_contact_dialog import AddContactDialog

        return AddContactDialog(bridge, window)

    def safety() -> QWidget:
        from ui.views.safety_number_dialog import SafetyNumberDialog

        item = window.conversations.item(demo.ids["Ben Okafor"])
        assert item is not None
        return SafetyNumberDialog(bridge, item.contact, window)

    def settings() -> QWidget:
        from ui.views.settings_dialog import SettingsDialog

        return SettingsDialog(bridge, window)

    def new_group() -> QWidget:
        from ui.views.group_dialogs import CreateGroupDialog

        contacts = [item.contact for item in window.conversations.items()]
        dialog = CreateGroupDialog(bridge, contacts, window)
        dialog.name.setText("Book club")
        for row in (0, 2):
            dialog.members.item(row).setCheckState(Qt.CheckState.Checked)
        return dialog

    def manage_group() -> QWidget:
        from ui.views.group_dialogs import ManageGroupDialog

        item = window.groups.item(demo.group_id)
        assert item is not None
        contacts = [i.contact for i in window.conversations.items()]
        return ManageGroupDialog(bridge, item.group, contacts, window)

    return [
        ("new-group", new_group),
        ("manage-group", manage_group),
        ("my-code", my_code),
        ("add-contact", add_contact),
        ("safety-number", safety),
        ("settings", settings),
    ]


async def demo_files(demo: Demo, tmp: Path) -> None:
    """Alice sends a photo (auto-accepted: a thumbnail), offers slides, and a big data set
    is on its way (throttled so the shots show it moving)."""
    from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter

    alice = demo.friends["Alice Moreau"]
    me = demo.me
    image = QImage(640, 420, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    gradient = QLinearGradient(0, 0, 640, 420)
    gradient.setColorAt(0, QColor("#2b6cb0"))
    gradient.setColorAt(1, QColor("#f6ad55"))
    painter.fillRect(image.rect(), gradient)
    painter.setBrush(QColor("#ffffff"))
    painter.drawEllipse(420, 80, 120, 120)
    painter.end()
    photo = tmp / "lab-bench.png"
    image.save(str(photo))
    slides = tmp / "demo-day-slides.pdf"
    slides.write_bytes(os.urandom(3 << 20))
    dataset = tmp / "sensor-dataset.tar"
    dataset.write_bytes(os.urandom(96 << 20))
    # The scripted conversation lives only in my database, so Alice's clock is behind it and
    # her offers would sort above it; a real message from me brings her clock forward.
    asked = await me.chat.send_text(
        demo.ids["Alice Moreau"], "Can you send me the files for today?"
    )
    async with asyncio.timeout(20):
        while not await alice.chat.history(me.contact_id, limit=1):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert (await alice.chat.history(me.contact_id, limit=1))[0].lamport == asked.lamport
    await me.files.configure(rate_limit=1 << 20)  # still moving in the dark shots
    big = await alice.files.send_file(me.contact_id, dataset)
    shown = await alice.files.send_file(me.contact_id, photo)
    await alice.files.send_file(me.contact_id, slides)
    async with asyncio.timeout(20):
        while len(me.files.transfers()) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await me.files.accept(big.id)
    async with asyncio.timeout(20):
        while me.files.find(shown.id).state.name != "COMPLETE":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        while me.files.find(big.id).speed < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def shoot_search_and_switcher(
    app: QApplication, window: MainWindow, mode: str, save: Callable[..., Awaitable[None]]
) -> None:
    """Search in Alice's conversation, then the quick switcher over the window."""
    window.chat.open_search()
    window.chat.search_bar.field.setText("LAN")
    window.chat.search_bar.queryChanged.emit("LAN")
    await settle(app, 0.8)
    await save(f"search-{mode}")
    window.chat.close_search()

    from ui.views.quick_switcher import QuickSwitcher

    switcher = QuickSwitcher(window.conversations, window)
    switcher.show()
    switcher.field.setText("a")
    await settle(app, 0.4)
    await save(f"switcher-{mode}", switcher)
    switcher.close()
    switcher.deleteLater()


async def shoot_dialogs(
    app: QApplication,
    window: MainWindow,
    demo: Demo,
    mode: str,
    only: set[str] | None,
    save: Callable[..., Awaitable[None]],
) -> None:
    """The dialogs (ui/views/*_dialog.py), over the window as the user sees them."""
    for name, make in dialogs(window, demo):
        if only and f"{name}-{mode}" not in only:
            continue
        try:
            dialog = make()
            dialog.adjustSize()
            center = window.mapToGlobal(window.rect().center())
            dialog.move(center.x() - dialog.width() // 2, center.y() - dialog.height() // 2)
            dialog.show()
            await settle(app, 1.0)
            await save(f"{name}-{mode}", dialog)
            dialog.close()
            dialog.deleteLater()
        except Exception as exc:  # a dialog must not stop the other shots
            print(f"skipped {name}-{mode}: {exc!r}", file=sys.stderr)


async def shoot(out: Path, only: set[str] | None) -> list[Path]:
    from ui import theme
    from ui.bridge import Bridge
    from ui.views.main_window import MainWindow

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="chinwag-shots-") as tmp:
        demo = await build_demo(Path(tmp))
        demo.group_id = await build_group(demo)
        bridge = Bridge(demo.me)
        window = MainWindow(bridge)
        try:
            await window.load()
            window.resize(WINDOW)
            window.show()
            await settle(app)
            alice = demo.ids["Alice Moreau"]
            manager = theme.manager()
            assert manager is not None

            async def save(name: str, *overlays: QWidget) -> None:
                if only and name not in only:
                    return
                await settle(app, 0.4)
                path = out / f"{name}.png"
                grab(window, overlays).save(str(path))
                written.append(path)
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

            # The plain conversation first: the files, sent next, end Alice's conversation.
            for mode in ("light", "dark"):
                manager.set_mode(mode)
                window.chat.clear()
                window.stack.setCurrentWidget(window.empty)
                window.list.select_contact(None)
                await save(f"empty-{mode}")
                window.open_conversation(alice)
                bridge.typingChanged.emit(alice, True)
                await settle(app, 0.6)
                await save(f"main-{mode}")
                bridge.typingChanged.emit(alice, False)
            await demo_files(demo, Path(tmp))

            for mode in ("light", "dark"):
                manager.set_mode(mode)
                window.open_conversation(alice)
                window.chat.transfers.show_contact(alice)
                await settle(app, 1.2)
                await save(f"files-{mode}")

                window.open_group(demo.group_id)
                await settle(app, 0.6)
                await save(f"group-{mode}")
                window.open_conversation(alice)

                await shoot_search_and_switcher(app, window, mode, save)

                await shoot_dialogs(app, window, demo, mode, only, save)
        finally:
            window.shutdown()
            bridge.detach()
            window.close()
            for friend in demo.friends.values():
                await friend.aclose()
            await demo.me.aclose()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--scale", type=float, default=1.0, help="device pixel ratio")
    parser.add_argument("--only", action="append", help="render only these shots")
    args = parser.parse_args(argv)
    if args.scale != 1.0:
        os.environ["QT_SCALE_FACTOR"] = str(args.scale)
    from ui.app import create_application, make_event_loop

    app = create_application([sys.argv[0]])
    families = set(QFontDatabase.families())
    for family in ("Inter", "Cantarell", "Noto Sans"):
        if family in families:
            font = QFont(family)
            font.setPointSizeF(10.0)
            app.setFont(font)
            break
    args.out.mkdir(parents=True, exist_ok=True)
    loop = make_event_loop(app)
    asyncio.set_event_loop(loop)
    try:
        written = loop.run_until_complete(shoot(args.out, set(args.only) if args.only else None))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    print(f"{len(written)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
