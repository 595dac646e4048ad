"""The local control socket of a running peer: one JSON request per line, one answer per line.

It is a Unix socket in the profile folder, mode 0600 in a 0700 folder: only the profile's
owner can reach it. Request ``{"cmd": "send", "args": {...}}``; answer
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from .api import LocalApi
from .errors import ChinwagError

log = logging.getLogger(__name__)

MAX_REQUEST = 1024 * 1024


class ControlError(Exception):
    exit_code = 1  # the running peer's, for an error that has its own (a damaged database)


class ControlServer:
    def __init__(self, api: LocalApi, path: Path) -> None:
        self._api = api
        self.path = path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a killed run; we hold the profile lock
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            log.info("control client error: %s", exc)
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["cmd"]
            args = request.get("args", {})
            if not isinstance(command, str) or not isinstance(args, dict):
                raise TypeError("cmd must be a string and args an object")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return {"ok": True, "result": await self._api.call(command, args)}
        except TypeError as exc:
            return {"ok": False, "error": f"bad arguments for {command}: {exc}"}
        except Exception as exc:
            if not _is_user_error(exc):
                log.exception("control command %s failed", command)
            answer: dict[str, Any] = {"ok": False, "error": str(exc) or type(exc).__name__}
            if isinstance(getattr(exc, "exit_code", None), int):
                answer["exit_code"] = exc.exit_code  # type: ignore[attr-defined]
            return answer


def _is_user_error(exc: Exception) -> bool:
    return isinstance(exc, ChinwagError)


def answers(path: Path) -> bool:
    """Whether a running peer accepts connections at `path` now (not a stale socket)."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def call(path: Path, command: str, args: dict[str, Any], wait: float = 60.0) -> Any:
    """Run one command on the peer listening at `path`. Raises ConnectionError if none."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST)
    try:
        writer.write(json.dumps({"cmd": command, "args": args}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(wait):
            line = await reader.readline()
    finally:
        writer.close()
    if not line:
        raise ControlError("the running peer closed the control connection")
    answer = json.loads(line)
    if not answer.get("ok"):
        error = ControlError(answer.get("error", "unknown error"))
        if isinstance(answer.get("exit_code"), int):
            error.exit_code = answer["exit_code"]
        raise error
    return answer.get("result")
