"""Entry point of the desktop app (`chinwag`, `make run`, `python -m ui.app`).

One asyncio loop, shared with Qt through qasync, runs everything: the peer service
in-process, and the window. Start-up: first run -> onboarding, then the profile is
created; later runs -> the unlock dialog when the profile has a passphrase (unless
CHINWAG_PASSPHRASE is set), else it opens directly. Closing the window, Quit (Ctrl+Q) or
quitting from the tray shuts the service down (``await service.aclose()``) before the
loop stops.

    chinwag [--profile DIR] [--listen HOST:PORT] [--address HOST:PORT ...]
    chinwag --install-desktop-entry | --remove-desktop-entry   (the application menu)

``--profile`` / ``CHINWAG_PROFILE`` and ``CHINWAG_PASSPHRASE`` work as in chinwag-cli.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

_STARTED = time.perf_counter()

# Only the light part of the package before the window shows (issue 15): the peer service
# (SQLAlchemy, Alembic, zeroconf, Tor control: most of a second) is imported on a thread
# once the window is painted from a raw read (messenger.read_startup). tests/ui/
# test_startup_imports.py checks that none of it is loaded at the first paint.
import messenger  # noqa: E402
from messenger import (  # noqa: E402
    DatabaseDamaged,
    ProfileDir,
    ProfileError,
    ProfileLocked,
    ServiceError,
    StartupView,
    WrongPassphrase,
    configure_logging,
    default_profile_dir,
    parse_listen,
    read_startup,
    restrict_umask,
)
from ui import _pyside_fix  # noqa: E402

if TYPE_CHECKING:
    from messenger import PeerService, ServiceConfig

_pyside_fix.apply()

from PySide6.QtCore import QEvent, QObject, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QWidget  # noqa: E402

from ui import theme  # noqa: E402

log = logging.getLogger("chinwag.ui")

# Set (to anything) to keep Tor off, as chinwag-cli's CHINWAG_NO_TOR (tests set it).
NO_TOR_ENV = "CHINWAG_NO_TOR"

# Benchmarks and smoke tests: print "chinwag: window shown after X s" at the main window's
# first paint and "chinwag: conversations listed after X s" once they are, then quit cleanly.
EXIT_AFTER_SHOWN_ENV = "CHINWAG_EXIT_AFTER_SHOWN"

# Seconds the window waits for its first paint before building the rest and opening the
# service anyway (a window that starts hidden may never be painted).
FIRST_PAINT_WAIT = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chinwag",
        description="Chinwag: serverless, end-to-end encrypted chat, on the LAN or over Tor.",
    )
    parser.add_argument("--profile", type=Path, help="profile folder (or CHINWAG_PROFILE)")
    parser.add_argument("--listen", help="HOST:PORT to listen on (default: all interfaces)")
    parser.add_argument(
        "--address", action="append", default=[], help="extra HOST:PORT to put in invites"
    )
    parser.add_argument(
        "--no-tor",
        action="store_true",
        help=f"do not start Tor in this run, whatever the setting (or set {NO_TOR_ENV})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    entry = parser.add_mutually_exclusive_group()
    entry.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add Chinwag to your application menu (Linux, BSD), then exit",
    )
    entry.add_argument(
        "--remove-desktop-entry",
        action="store_true",
        help="take it out of the menu again, then exit",
    )
    return parser


def tor_blocked(args: argparse.Namespace) -> str | None:
    """Why Tor stays off in this run whatever the profile's setting (--no-tor, or
    CHINWAG_NO_TOR, which test and bench helpers set); None: the setting decides."""
    if getattr(args, "no_tor", False):
        return "turned off for this run (--no-tor)"
    if os.environ.get(NO_TOR_ENV):
        return f"turned off for this run ({NO_TOR_ENV} is set)"
    return None


def service_config(args: argparse.Namespace) -> ServiceConfig:
    host, port = "", None
    if args.listen:
        host, port = parse_listen(args.listen)
    return messenger.ServiceConfig(
        listen_host=host,
        listen_port=port,
        extra_addresses=tuple(args.address),
        # None: Tor follows the profile's "tor" setting, switchable from Settings.
        tor=False if tor_blocked(args) else None,
    )


# -- dialogs without nested event loops -------------------------------------------------------


async def run_dialog(dialog: QDialog) -> int:
    """Show a dialog and wait for it on the asyncio loop (never `exec()` inside a task:
    a nested Qt loop would run other tasks re-entrantly)."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def finished(result: int) -> None:
        if not future.done():
            future.set_result(result)

    dialog.finished.connect(finished)
    dialog.open()
    dialog.raise_()
    dialog.activateWindow()
    return await future


async def message(
    icon: QMessageBox.Icon, title: str, text: str, parent: QWidget | None = None
) -> None:
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setWindowIcon(theme.app_icon())
    await run_dialog(box)


# -- opening the profile ---------------------------------------------------------------------


async def obtain_service(
    profile: ProfileDir,
    config: ServiceConfig | Callable[[], ServiceConfig],
    tor_unavailable: str | None = None,
) -> PeerService | None:
    """Onboarding, unlock or a direct open; None when the user gave up (or it failed and
    the user was told why). `config` may be a function making it: the unlock dialog
    then shows before the service (and ServiceConfig with it) is imported."""
    try:
        if not profile.exists():
            return await _onboard(profile, _config(config), tor_unavailable)
        env = os.environ.get("CHINWAG_PASSPHRASE")
        if profile.needs_passphrase() and env is None:
            return await _unlock(profile, config)
        service: PeerService = await messenger.PeerService.open(
            profile.path, env or None, config=_config(config)
        )
        return service
    except OPEN_ERRORS as exc:
        await report_open_error(profile, exc)
    return None


def _config(config: ServiceConfig | Callable[[], ServiceConfig]) -> ServiceConfig:
    return config() if callable(config) else config


async def _unlock(
    profile: ProfileDir, config: ServiceConfig | Callable[[], ServiceConfig]
) -> PeerService | None:
    """The unlock dialog, shown at once: the service's modules are imported on a thread
    from its first paint on, while the passphrase is typed."""
    from ui.views.onboarding import UnlockDialog

    importing: asyncio.Future[Any] | None = None

    def start_importing() -> asyncio.Future[Any]:
        nonlocal importing
        if importing is None:
            importing = asyncio.ensure_future(asyncio.to_thread(getattr, messenger, "PeerService"))
        return importing

    async def open_service(path: Path, passphrase: str | None, **_: Any) -> PeerService:
        service_class = await start_importing()
        service: PeerService = await service_class.open(path, passphrase, config=_config(config))
        return service

    dialog = UnlockDialog(profile.path, open_service=open_service)
    dialog.setWindowIcon(theme.app_icon())
    # Kept referenced while the dialog lives: PySide would otherwise call the filter on a
    # new wrapper of the C++ object, one whose __init__ never ran.
    first_paint = _FirstPaint(dialog, start_importing, marker="unlock dialog shown")
    try:
        if await run_dialog(dialog) != QDialog.DialogCode.Accepted:
            return None
        return dialog.service
    finally:
        del first_paint
        if importing is not None:
            await importing  # owned here: never left running past the dialog


# What opening a profile raises that the user is told about (ProfileLocked, WrongPassphrase
# and DatabaseDamaged are ProfileErrors).
OPEN_ERRORS = (ProfileError, ServiceError, OSError)


async def report_open_error(profile: ProfileDir, exc: BaseException) -> None:
    """Tell the user why the profile did not open (the errors PeerService.open raises)."""
    match exc:
        case ProfileLocked():
            await message(
                QMessageBox.Icon.Warning,
                "Chinwag is already running",
                "This profile is open in another Chinwag process:\n\n"
                f"{exc.holder}\n\nClose it first, or start Chinwag with another profile "
                "(--profile DIR).",
            )
        case DatabaseDamaged():
            await message(
                QMessageBox.Icon.Critical,
                "Your messages database is damaged",
                f"Chinwag cannot open {profile.path}:\n\n{exc}",
            )
        case WrongPassphrase():
            await message(
                QMessageBox.Icon.Critical,
                "Wrong passphrase",
                "CHINWAG_PASSPHRASE does not unlock this profile. Unset it to type the "
                "passphrase instead.",
            )
        case _:
            await message(
                QMessageBox.Icon.Critical,
                "Chinwag cannot start",
                f"Chinwag could not open {profile.path}:\n\n{exc}",
            )


async def read_early(profile: ProfileDir) -> StartupView | None:
    """The window's first paint from a raw read, when the profile opens without asking
    anything (no passphrase, or none to type); None: the usual path (onboarding, the
    unlock dialog, CHINWAG_PASSPHRASE's key derivation, a migration due). Raises what
    PeerService.open raises."""
    if not profile.exists() or profile.needs_passphrase():
        return None
    if os.environ.get("CHINWAG_PASSPHRASE") is not None:
        return None
    return await asyncio.to_thread(read_startup, profile, None)


async def open_behind(profile: ProfileDir, config: Callable[[], ServiceConfig]) -> PeerService:
    """Import the service on a thread (the loop keeps painting the window meanwhile), then
    open the profile as obtain_service does."""
    await asyncio.to_thread(getattr, messenger, "PeerService")
    service: PeerService = await messenger.PeerService.open(profile.path, None, config=config())
    return service


async def _onboard(
    profile: ProfileDir, config: ServiceConfig, tor_unavailable: str | None = None
) -> PeerService | None:
    from ui.views.onboarding import OnboardingDialog

    while True:
        dialog = OnboardingDialog(tor_unavailable=tor_unavailable)
        dialog.setWindowIcon(theme.app_icon())
        if await run_dialog(dialog) != QDialog.DialogCode.Accepted:
            if not dialog.wants_restore:
                return None
            restored = await _restore(profile, config)
            if restored is not None:
                return restored
            continue
        name, passphrase = dialog.result_name(), dialog.result_passphrase()
        settings = dialog.result_settings()
        dialog.deleteLater()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            service, warnings = await messenger.PeerService.create_profile(
                profile.path, name, passphrase, config=config, settings=settings
            )
        except ServiceError as exc:
            QApplication.restoreOverrideCursor()
            await message(QMessageBox.Icon.Warning, "Chinwag", str(exc))
            continue
        finally:
            with contextlib.suppress(Exception):
                QApplication.restoreOverrideCursor()
        for warning in warnings:
            await message(QMessageBox.Icon.Information, "About your key", warning)
        return service


async def _restore(profile: ProfileDir, config: ServiceConfig) -> PeerService | None:
    """Restore a backup into the (empty) profile folder and open it; None: cancelled."""
    from ui.views.backup_dialogs import RestoreDialog

    dialog = RestoreDialog(profile.path)
    dialog.setWindowIcon(theme.app_icon())
    if await run_dialog(dialog) != QDialog.DialogCode.Accepted:
        return None
    passphrase = dialog.passphrase_used if dialog.needs_passphrase else None
    dialog.deleteLater()
    service: PeerService = await messenger.PeerService.open(profile.path, passphrase, config=config)
    return service


# -- the running app -----------------------------------------------------------------------


class _FirstPaint(QObject):
    """Notices a window's first paint; with CHINWAG_EXIT_AFTER_SHOWN set, says when
    ("chinwag: <marker> after X s": benchmarks and smoke tests measure start-up with it)."""

    def __init__(
        self, window: QWidget, on_paint: Callable[[], object], marker: str = "window shown"
    ) -> None:
        super().__init__(window)
        self._on_paint = on_paint
        self._marker = marker
        self._fired = False
        window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self._fired and event.type() == QEvent.Type.Paint:
            self._fired = True
            obj.removeEventFilter(self)  # one paint is all it waits for
            if os.environ.get(EXIT_AFTER_SHOWN_ENV):
                _say(self._marker)
            QTimer.singleShot(0, self, self._on_paint)
        return False


async def run_window(
    service: PeerService | None,
    tor_unavailable: str | None = None,
    *,
    early: StartupView | None = None,
    opening: Callable[[], Awaitable[PeerService]] | None = None,
    profile: ProfileDir | None = None,
) -> int:
    """Show the window over a running service until the user quits; then close it all.

    The window shows first and fills as the conversations load (a big profile's summary
    query must not keep the screen empty). With `service` None it is painted from `early`
    (a StartupView) while `opening()` imports and opens the service behind it; the
    window then follows the service live. If that open fails, the user is told why
    (about `profile`) and the app ends (1)."""
    from ui.bridge import Bridge
    from ui.tray import Tray
    from ui.views.main_window import MainWindow

    if service is None and opening is None:
        raise ValueError("run_window without a service needs `opening`")
    manager = theme.manager()
    bridge = Bridge(service, tor_blocked=tor_unavailable, early=early)
    if manager is not None:
        manager.set_mode(str(bridge.setting("theme") or "system"))
    window = MainWindow(bridge)
    done = asyncio.Event()
    tray = Tray(bridge, window)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    opener: asyncio.Task[PeerService | None] | None = None
    first_paint: _FirstPaint | None = None
    try:
        handled = _wire_window(window, tray, done.set)
        painted = asyncio.Event()
        first_paint = _FirstPaint(window, painted.set)
        window.resize(1100, 720)
        window.show()
        await window.load()
        tray.set_unread(window.conversations.unread_total())
        qapp = QApplication.instance()
        collector = qapp.findChild(MainThreadCollector, "chinwag-gc") if qapp else None
        if collector is not None:
            QTimer.singleShot(3000, collector, collector.settle)
        # The rest waits for the list on screen (or a window that is not painted, hidden
        # at start, a little): building the panes and importing the service compete
        # with the first paint for the one interpreter.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_PAINT_WAIT):
                await painted.wait()
        await asyncio.sleep(0)  # the paint that shows the loaded list
        if os.environ.get(EXIT_AFTER_SHOWN_ENV):
            _say("conversations listed")
        window.build_panes()
        if opening is not None and service is None:
            opener = asyncio.create_task(_open_into(bridge, opening, profile))
            opener.add_done_callback(lambda t: _end_if_failed(t, done))
        if os.environ.get(EXIT_AFTER_SHOWN_ENV):
            if opener is not None and await opener is not None:
                _say("service up")
            done.set()
        await done.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        window.hide()
        tray.hide()
        failed = opener is not None and _failed(opener)
        if opener is not None:
            service = await _stop_opening(opener)
        del first_paint  # kept alive until here (see _unlock)
        window.shutdown()
        bridge.detach()
        if service is not None:
            await service.aclose()
        window.deleteLater()
    return 1 if failed else 0


async def _stop_opening(opener: asyncio.Task[PeerService | None]) -> PeerService | None:
    """The service the opener brought up (to close it), or None: if it is still opening
    it is cancelled, and PeerService.open closes what it opened."""
    opener.cancel()
    try:
        return await opener
    except asyncio.CancelledError:
        return None
    except Exception:
        log.exception("the service did not start")
        return None


def _failed(opener: asyncio.Task[PeerService | None]) -> bool:
    """The service did not open (the user was told why, or it raised what is logged)."""
    if not opener.done() or opener.cancelled():
        return False
    return opener.exception() is not None or opener.result() is None


def _end_if_failed(opener: asyncio.Task[PeerService | None], done: asyncio.Event) -> None:
    if _failed(opener):
        done.set()


def _wire_window(window: Any, tray: Any, quit_app: Callable[[], None]) -> list[signal.Signals]:
    """The tray and the window's quit requests, and SIGINT/SIGTERM; returns the signals
    handled (removed again when the window closes)."""
    window.notifier = tray
    window.unreadChanged.connect(tray.set_unread)

    def show_window() -> None:
        window.showNormal()
        window.raise_()
        window.activateWindow()

    def open_from_notification(contact_id: str) -> None:
        show_window()
        window.open_conversation(contact_id)

    tray.showRequested.connect(show_window)
    tray.conversationRequested.connect(open_from_notification)
    tray.quitRequested.connect(quit_app)
    window.quitRequested.connect(quit_app)
    handled = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, quit_app)
            handled.append(sig)
    return handled


async def _open_into(
    bridge: Any, opening: Callable[[], Awaitable[PeerService]], profile: ProfileDir | None
) -> PeerService | None:
    """Open the service behind the window and hand it to the bridge; None: it failed and
    the user was told why."""
    try:
        service = await opening()
    except OPEN_ERRORS as exc:
        await report_open_error(profile or ProfileDir(Path(".")), exc)
        return None
    bridge.attach(service)
    return service


def _say(what: str) -> None:
    """CHINWAG_EXIT_AFTER_SHOWN: a marker line with the seconds since start."""
    print(f"chinwag: {what} after {time.perf_counter() - _STARTED:.3f} s", flush=True)


async def run(args: argparse.Namespace) -> int:
    profile = ProfileDir(args.profile or default_profile_dir())
    blocked = tor_blocked(args)
    try:
        early = await read_early(profile)
    except (ProfileError, ServiceError, OSError) as exc:
        await report_open_error(profile, exc)
        return 1
    if early is not None:
        return await run_window(
            None,
            blocked,
            early=early,
            opening=lambda: open_behind(profile, lambda: service_config(args)),
            profile=profile,
        )
    service = await obtain_service(profile, lambda: service_config(args), blocked)
    if service is None:
        return 1
    return await run_window(service, blocked)


class MainThreadCollector(QObject):
    """Runs Python's cyclic garbage collector on the GUI thread only.

    Left alone, the collector runs in whichever thread happens to allocate, often the
    database thread; a QObject in a reference cycle freed there is deleted on the wrong
    thread, its timers stay registered with the GUI thread, and Qt later crashes on them.
    """

    def __init__(self, parent: QObject, interval_ms: int = 250) -> None:
        super().__init__(parent)
        self._threshold = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    def settle(self) -> None:
        """Once start-up is over: collect, then move every object alive now out of the
        collector's sight (gc.freeze), so later full collections stay short."""
        gc.collect()
        gc.freeze()

    def check(self) -> None:
        counts = gc.get_count()
        generation = -1
        for i, (count, limit) in enumerate(zip(counts, self._threshold, strict=True)):
            if count > limit:
                generation = i
        if generation >= 0:
            gc.collect(generation)


def make_event_loop(app: QApplication) -> asyncio.AbstractEventLoop:
    """qasync's loop, staying the running loop when `run_forever` returns.

    qasync's `run_until_complete` processes Qt events once more after `run_forever`
    has cleared the running loop; timers and socket notifiers that fire then would run
    asyncio callbacks with no running loop (create_task and friends fail)."""
    import qasync

    class EventLoop(qasync.QEventLoop):  # type: ignore[misc]
        def run_forever(self) -> Any:
            try:
                return super().run_forever()
            finally:
                asyncio.events._set_running_loop(self)

        def close(self) -> None:
            if asyncio.events._get_running_loop() is self:
                asyncio.events._set_running_loop(None)
            super().close()

    return EventLoop(app)


def create_application(argv: Sequence[str]) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication(list(argv))
    app.setApplicationName("Chinwag")
    app.setOrganizationName("Chinwag")
    app.setDesktopFileName("chinwag")
    app.setWindowIcon(theme.app_icon())
    app.setQuitOnLastWindowClosed(False)  # quitting is ours: the service closes first
    theme.install(app, "system")
    collector = MainThreadCollector(app)
    collector.setObjectName("chinwag-gc")
    return app


def _display_gone() -> NoReturn:
    """Qt ended its event loop under us: the display went away (the X server or the
    session ended). Qt's loop cannot run again without one, so the window's task cannot
    finish its shutdown; end the process at once instead of reporting a pending task.
    Nothing is lost: a message is shown or acknowledged only once committed (SQLite's
    commit is atomic if a write is cut short), the profile lock is the process's, and
    our tor exits with its controlling process (__OwningControllerProcess)."""
    print("chinwag: the display went away; Chinwag stopped.", file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    restrict_umask()  # every file Chinwag writes is the user's only
    args, qt_args = build_parser().parse_known_args(argv)
    if args.install_desktop_entry or args.remove_desktop_entry:
        from ui import desktop_entry

        return desktop_entry.main("install" if args.install_desktop_entry else "remove")
    try:
        if args.listen:  # ServiceConfig itself waits for the service's import
            parse_listen(args.listen)
    except Exception as exc:  # a malformed --listen
        print(f"chinwag: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    app = create_application([sys.argv[0], *qt_args])
    loop = make_event_loop(app)
    asyncio.set_event_loop(loop)
    session = loop.create_task(run(args))
    try:
        return loop.run_until_complete(session)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        if session.done() or "stopped before Future completed" not in str(exc):
            raise
        _display_gone()
    finally:
        with contextlib.suppress(Exception):
            loop.close()
        asyncio.set_event_loop(None)


if __name__ == "__main__":
    sys.exit(main())
