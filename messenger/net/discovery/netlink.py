"""Network change notices from Linux rtnetlink, so discovery re-registers at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)


class NetlinkWatcher:
    """Calls `on_change` when a link or an address changes (Linux rtnetlink; elsewhere
    `start` returns False and the caller polls)."""

    _GROUPS: Final = 0x1 | 0x10 | 0x100  # RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        family = getattr(socket, "AF_NETLINK", None)
        if family is None or not sys.platform.startswith("linux"):
            return False
        try:
            sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
            sock.bind((0, self._GROUPS))
        except OSError as exc:
            log.info("no rtnetlink (%s): network changes are polled", exc)
            return False
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
        self._on_change()

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None
