"""Shared fixtures of the Qt tests: one qasync loop on pytest-qt's QApplication, real peers
on 127.0.0.1, and main windows over them.

Tests here are plain (synchronous) functions: they drive the loop with ``qloop.run(coro)``
and ``qloop.until(predicate)``, so Qt events and asyncio callbacks run on the same thread
exactly as in the app. Never call ``qtbot.wait*`` to make asyncio progress: it spins a
nested Qt loop outside the asyncio one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from messenger.service import PeerService
from ui import _pyside_fix

_pyside_fix.apply()  # PySide6 6.12 on Python 3.11 releases None once per void call

from tests.net.conftest import config as net_config  # noqa: E402

T = TypeVar("T")

# The same fast timers and loopback config as the network tests.
peer_config = net_config


class QLoop:
    """Runs coroutines on the qasync loop the test's widgets share."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, awaitable: Awaitable[T] | Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(timeout):
                return await awaitable

        try:
            return self.loop.run_until_complete(bounded())
        finally:
            self.keep_current()

    def keep_current(self) -> None:
        """Stay the running loop between runs: pytest-qt processes Qt events around each
        test phase, which fires qasync's timers and socket notifiers; their asyncio
        callbacks need a running loop (qasync never checks for one itself)."""
        asyncio.events._set_running_loop(self.loop)

    def until(
        self,
        predicate: Callable[[], bool | Awaitable[bool]],
        timeout: float = 15.0,
        what: str = "",
    ) -> None:
        """Spin the loop until predicate() is true; fails the test after `timeout`."""

        async def poll() -> None:
            deadline = time.monotonic() + timeout
            while True:
                result = predicate()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what or predicate}"
                    )
                await asyncio.sleep(0.01)

        self.run(poll(), timeout=timeout + 5)

    def sleep(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds), timeout=seconds + 5)


@pytest.fixture(scope="session", autouse=True)
def app_theme(qapp: Any) -> Any:
    """The app's own style, palette and style sheet, installed once as `chinwag` does."""
    from ui import theme

    # As in the app: closing the last window must not stop the (shared) loop.
    qapp.setQuitOnLastWindowClosed(False)
    return theme.install(qapp, "light")


@pytest.fixture
def qloop(qapp: Any) -> Iterator[QLoop]:
    from ui.app import make_event_loop

    # Collect garbage on this (the GUI) thread only: a QObject in a reference cycle that
    # the collector frees on the database thread is deleted there, behind Qt's back.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    loop = make_event_loop(qapp)
    asyncio.set_event_loop(loop)
    runner = QLoop(loop)
    runner.keep_current()
    try:
        yield runner
    finally:
        # Whatever a test left running is cancelled, then the loop closes.
        async def drain() -> None:
            current = asyncio.current_task()
            leftovers = [t for t in asyncio.all_tasks() if t is not current]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)

        asyncio.events._set_running_loop(None)
        with contextlib.suppress(Exception):
            loop.run_until_complete(drain())
        asyncio.events._set_running_loop(None)
        loop.close()
        asyncio.set_event_loop(None)
        del loop, runner
        gc.collect()
        if gc_was_enabled:
            gc.enable()


PeerFactory = Callable[..., PeerService]


@pytest.fixture
def make_peer(qloop: QLoop, tmp_path: Path) -> Iterator[PeerFactory]:
    """make_peer("alice") creates a profile and starts its service on the test's loop."""
    services: list[PeerService] = []

    def factory(name: str, *, network: bool = True, **overrides: object) -> PeerService:
        cfg = peer_config(network=network, **overrides)
        service, _ = qloop.run(
            PeerService.create_profile(
                tmp_path / name, name.capitalize(), None, config=cfg, rng=random.Random(1)
            )
        )
        services.append(service)
        return service

    yield factory
    for service in reversed(services):
        with contextlib.suppress(Exception):
            qloop.run(service.aclose())


def befriend(qloop: QLoop, a: PeerService, b: PeerService) -> tuple[str, str]:
    """a invites b; returns (b's contact id at a, a's contact id at b), both online."""
    code, _ = qloop.run(a.invites.create_invite())
    contact_at_b = qloop.run(b.invites.accept_invite(code))
    qloop.until(
        lambda: a.contacts.is_online(b.contact_id) and b.contacts.is_online(a.contact_id),
        what="online",
    )
    return b.contact_id, contact_at_b.id


def top_level(kind: type) -> Any:
    """The visible top-level widget of this type, or None."""
    from PySide6.QtWidgets import QApplication

    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, kind) and widget.isVisible():
            return widget
    return None


def start_task(qloop: QLoop, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start `coro` as a task on the test's loop and return it without waiting."""

    async def start() -> asyncio.Task[T]:
        return asyncio.ensure_future(coro)

    return qloop.run(start())


@pytest.fixture
def open_window(qloop: QLoop, qtbot: Any) -> Iterator[Callable[[PeerService], Any]]:
    """open_window(service) -> a shown, loaded MainWindow over a Bridge to the service."""
    from ui.bridge import Bridge
    from ui.views.main_window import MainWindow

    opened: list[tuple[Any, Bridge]] = []

    def factory(service: PeerService) -> Any:
        bridge = Bridge(service)
        window = MainWindow(bridge)
        qtbot.addWidget(window)
        qloop.run(window.load())
        window.resize(1100, 720)
        window.show()
        window.activateWindow()
        opened.append((window, bridge))
        qloop.until(window.isActiveWindow, timeout=5, what="the window to become active")
        return window

    yield factory
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    for window, bridge in opened:
        window.shutdown()
        bridge.detach()
        window.hide()
        window.deleteLater()
    # Delete the windows now, at a known point, not whenever Python collects them.
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
