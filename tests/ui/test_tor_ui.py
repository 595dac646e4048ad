"""Tor in the window, over real peers on 127.0.0.1: the sidebar status fed by the service's
TorStatusChanged events, the onion presence mark for contacts reached over Tor, the
Settings switch (persisted per profile) and the first-run choice.

No tor runs here (tests set CHINWAG_NO_TOR; ServiceConfig(tor=False)): the events are the
service's own event objects published on its bus, as TorReach publishes them.
tests/tor/test_tor_window.py runs the window over a real tor and a private Tor network.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QMessageBox

from messenger import PeerService, PresenceChanged, ProfileDir, TorStatusChanged
from tests.ui.conftest import befriend, peer_config
from ui import app as ui_app
from ui import theme

ONION = "a" * 56 + ".onion:9878"


def _publish(service: PeerService, event: object) -> None:
    """Put an event on the service's bus, exactly as its workers do."""
    service._emit(event)  # type: ignore[arg-type]


def test_sidebar_shows_bootstrap_progress_then_reachable_with_the_onion(
    qloop, make_peer, open_window
):
    alice = make_peer("alice")
    window = open_window(alice)
    bar = window.tor_status
    assert bar.label.text() == "Tor: off"  # this service runs without Tor
    assert not bar.progress.isVisible()

    _publish(alice, TorStatusChanged("starting", 45, "Loading relay descriptors"))
    assert bar.label.text() == "Connecting to the Tor network… 45 %"
    assert bar.progress.isVisible() and bar.progress.value() == 45
    assert "Loading relay descriptors" in bar.toolTip()

    _publish(alice, TorStatusChanged("ready", 100, "Done", ONION))
    assert bar.label.text() == "Tor: reachable"
    assert not bar.progress.isVisible()
    assert ONION in bar.toolTip()

    _publish(alice, TorStatusChanged("lost", 100, "", ONION, "tor exited"))
    assert bar.label.text() == "Tor: reconnecting…"
    assert "tor exited" in bar.toolTip()

    _publish(alice, TorStatusChanged("failed", 100, "", ONION, "no consensus"))
    assert bar.label.text() == "Tor: not available"
    assert "no consensus" in bar.toolTip()


def test_the_status_opens_settings_at_the_network_page(qloop, qtbot, make_peer, open_window):
    from ui.views.settings_dialog import PAGES, SettingsDialog

    window = open_window(make_peer("alice"))
    qtbot.mouseClick(window.tor_status, Qt.MouseButton.LeftButton)
    dialogs = [d for d in window._dialogs if isinstance(d, SettingsDialog)]
    assert len(dialogs) == 1
    assert dialogs[0].pages.currentIndex() == PAGES.index("Network")
    dialogs[0].reject()


def _count_near(image: QImage, color: QColor, tolerance: int = 24) -> int:
    """Pixels of `image` within `tolerance` of `color` on every channel."""
    found = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            if (
                abs(c.red() - color.red()) <= tolerance
                and abs(c.green() - color.green()) <= tolerance
                and abs(c.blue() - color.blue()) <= tolerance
            ):
                found += 1
    return found


def test_a_contact_reached_over_tor_gets_the_onion_mark_not_the_green_dot(
    qloop, make_peer, open_window
):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    window.open_conversation(bob_at_alice)
    item = window.conversations.item(bob_at_alice)
    assert item is not None and item.online and item.route == "lan"  # loopback
    t = theme.current()

    def avatar_pixels() -> QImage:
        window.list.viewport().repaint()
        # the first row's avatar and its mark (the list's only row)
        return window.list.viewport().grab().toImage().copy(0, 0, 80, 72)

    lan = avatar_pixels()
    assert _count_near(lan, t.color("online")) > 10
    assert _count_near(lan, t.color("tor")) == 0
    assert window.chat.header.status.text() == "online · on your network"

    # The session moves to Tor (as Links announces a route change).
    _publish(alice, PresenceChanged(bob_at_alice, online=True, route="tor"))
    assert window.conversations.item(bob_at_alice).route == "tor"
    tor = avatar_pixels()
    assert _count_near(tor, t.color("tor")) > 10
    assert _count_near(tor, t.color("online")) == 0
    assert window.chat.header.status.text() == "online · over Tor"
    assert "IP address" in window.chat.header.status.toolTip()
    assert "over Tor" in window.conversations.item(bob_at_alice).accessible_text()
    model = window.conversations
    tip = model.index(model.row_of(bob_at_alice), 0).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.endswith("online over Tor")  # the list's tooltip explains the mark

    # Offline: no mark at all, and the route is forgotten.
    _publish(alice, PresenceChanged(bob_at_alice, online=False))
    assert window.conversations.item(bob_at_alice).route == ""
    gone = avatar_pixels()
    assert _count_near(gone, t.color("tor")) == 0 and _count_near(gone, t.color("online")) == 0


def test_a_move_between_routes_is_not_announced_as_coming_online_again(
    qloop, make_peer, open_window
):
    alice, bob = make_peer("alice"), make_peer("bob")
    bob_at_alice, _ = befriend(qloop, alice, bob)
    window = open_window(alice)
    presence: list[tuple[str, bool]] = []
    window.bridge.presenceChanged.connect(lambda cid, on: presence.append((cid, on)))
    _publish(alice, PresenceChanged(bob_at_alice, online=True, route="tor"))
    _publish(alice, PresenceChanged(bob_at_alice, online=True, route="lan"))
    assert window.conversations.item(bob_at_alice).route == "lan"
    assert presence.count((bob_at_alice, True)) <= 1


def test_the_tor_setting_is_stored_in_the_profile_and_survives_a_restart(
    qloop, qtbot, tmp_path, monkeypatch
):
    from ui.bridge import Bridge
    from ui.views.settings_dialog import SettingsDialog

    # Tor counts as available (a running Tor's control port is named) without a tor binary.
    monkeypatch.setenv("CHINWAG_TOR_CONTROL", "127.0.0.1:9")
    path = tmp_path / "alice"
    alice, _ = qloop.run(
        PeerService.create_profile(path, "Alice", None, config=peer_config(), rng=random.Random(1))
    )
    bridge = Bridge(alice)
    dialog = SettingsDialog(bridge)
    qtbot.addWidget(dialog)
    dialog.show_page("Network")
    box = dialog.tor_box
    assert box.isEnabled() and box.isChecked()  # never chosen: on where Tor can run
    # This service was opened with Tor off for the run: turning it on waits for a restart.
    box.setChecked(False)
    qloop.until(lambda: alice.settings.get("tor") is False, what="the setting stored")
    assert dialog.tor_state.text().startswith("Off: contacts are reached on your local network")
    box.setChecked(True)
    qloop.until(lambda: alice.settings.get("tor") is True, what="the setting stored")
    assert dialog.tor_state.text() == "Takes effect the next time Chinwag starts."
    box.setChecked(False)
    qloop.until(lambda: alice.settings.get("tor") is False, what="the setting stored")
    dialog.reject()
    bridge.detach()
    qloop.run(alice.aclose())

    again = qloop.run(PeerService.open(path, None, config=peer_config(tor=None)))
    try:
        assert again.settings["tor"] is False
        assert again.tor is None and again.reach.tor_status.state == "off"
        # "Tor only" means nothing while Tor is off: contacts still get the direct address.
        qloop.run(again.set_setting("tor_only", True))
        assert not again.reach.tor_only and again.addresses()
        qloop.run(again.set_setting("tor", True))
        assert again.settings["tor"] is True
    finally:
        qloop.run(again.aclose())
    third = qloop.run(PeerService.open(path, None, config=peer_config(network=False)))
    try:
        assert third.settings["tor"] is True
    finally:
        qloop.run(third.aclose())


def test_without_tor_the_switch_is_off_and_says_why(qloop, make_peer, qtbot):
    from ui.bridge import Bridge
    from ui.views.settings_dialog import SettingsDialog

    alice = make_peer("alice")
    bridge = Bridge(alice, tor_blocked="no `tor` binary found")
    dialog = SettingsDialog(bridge)
    qtbot.addWidget(dialog)
    dialog.show_page("Network")
    try:
        assert not dialog.tor_box.isEnabled() and not dialog.tor_box.isChecked()
        assert dialog.tor_state.text() == "Not available: no `tor` binary found"
    finally:
        bridge.detach()


def test_a_wrong_value_for_the_setting_is_refused_and_nothing_changes(qloop, make_peer):
    from messenger import ServiceError

    alice = make_peer("alice")
    with pytest.raises(ServiceError, match="true or false"):
        qloop.run(alice.set_setting("tor", "yes"))
    assert alice.settings["tor"] is None


def test_onboarding_explains_tor_and_stores_the_choice(qloop, tmp_path, monkeypatch):
    from ui.views.onboarding import OnboardingDialog

    monkeypatch.setenv("CHINWAG_TOR_CONTROL", "127.0.0.1:9")  # Tor counts as available
    profile = ProfileDir(tmp_path / "new")
    # tor=None: the service follows the choice; turned off, no Tor is ever started.
    task = asyncio.ensure_future(ui_app.obtain_service(profile, peer_config(tor=None)))
    qloop.until(lambda: _top_level(OnboardingDialog) is not None, what="onboarding")
    dialog = _top_level(OnboardingDialog)
    assert dialog.tor_box.isEnabled() and dialog.tor_box.isChecked()
    hint = dialog.tor_hint.text()
    for point in (
        "slower",
        "onion address, which stays the same",
        "also learn your IP addresses",  # true by default: only "Tor only" hides them
        "Hide my IP address from contacts (Tor only)",
    ):
        assert point in hint
    dialog.name.setText("Nova")
    dialog.protection.no_passphrase.setChecked(True)
    dialog.tor_box.setChecked(False)
    dialog.accept()

    async def dismiss_notes() -> None:  # a no-keyring warning may follow
        while not task.done():
            box = _top_level(QMessageBox)
            if box is not None:
                box.accept()
            await asyncio.sleep(0.02)

    qloop.run(dismiss_notes(), timeout=60)
    service = task.result()
    assert service is not None
    try:
        assert service.settings["tor"] is False
        assert service.tor is None  # never started
    finally:
        qloop.run(service.aclose())


def test_onboarding_without_tor_says_so_and_leaves_the_default(qtbot):
    from ui.views.onboarding import OnboardingDialog

    dialog = OnboardingDialog(tor_unavailable="no `tor` binary found")
    qtbot.addWidget(dialog)
    assert not dialog.tor_box.isEnabled() and not dialog.tor_box.isChecked()
    assert "no `tor` binary found" in dialog.tor_hint.text()
    assert dialog.result_settings() == {}  # on by itself once Tor is installed


def _top_level(kind):
    from PySide6.QtWidgets import QApplication

    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, kind) and widget.isVisible():
            return widget
    return None


def test_the_app_follows_the_setting_unless_tor_is_turned_off_for_the_run(monkeypatch):
    parser = ui_app.build_parser()
    monkeypatch.delenv("CHINWAG_NO_TOR", raising=False)
    args = parser.parse_args([])
    assert ui_app.tor_blocked(args) is None
    assert ui_app.service_config(args).tor is None  # the profile's "tor" setting decides
    args = parser.parse_args(["--no-tor"])
    assert ui_app.tor_blocked(args) == "turned off for this run (--no-tor)"
    assert ui_app.service_config(args).tor is False
    monkeypatch.setenv("CHINWAG_NO_TOR", "1")
    args = parser.parse_args([])
    assert "CHINWAG_NO_TOR" in (ui_app.tor_blocked(args) or "")
    assert ui_app.service_config(args).tor is False
