"""The local control socket of a running peer: one JSON request per line, one answer per line.

It is a Unix socket in the profile folder, mode 0600 in a 0700 folder: only the profile's
owner can reach it. Request ``{"cmd": "send", "args": {...}}``; answer
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "message"}``.

Where there are no Unix sockets (Windows), the same path is a 0600 file naming a loopback
TCP port and a random token; a client proves it could read that file by sending the token
as its first line, so only the profile's owner can talk to the peer there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from ..errors import ChinwagError
from .api import LocalApi

log = logging.getLogger(__name__)

MAX_REQUEST = 1024 * 1024


class ControlError(Exception):
    exit_code = 1  # the running peer's, for an error that has its own (a damaged database)


def unix_sockets() -> bool:
    """Whether asyncio serves Unix sockets here (not on Windows)."""
    return os.name == "posix" and hasattr(asyncio, "start_unix_server")


class ControlServer:
    def __init__(self, api: LocalApi, path: Path, *, unix: bool | None = None) -> None:
        self._api = api
        self.path = path
        self.unix = unix_sockets() if unix is None else unix
        self._token = ""  # the TCP fallback's: a client's first line must be this
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a killed run; we hold the profile lock
        if not self.unix or sys.platform == "win32":
            await self._start_tcp()
            return
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def _start_tcp(self) -> None:
        self._token = secrets.token_hex(32)
        self._server = await asyncio.start_server(
            self._handle_tcp, "127.0.0.1", 0, limit=MAX_REQUEST
        )
        port = self._server.sockets[0].getsockname()[1]
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            json.dump({"tcp": port, "token": self._token}, out)
        os.replace(tmp, self.path)  # a client never reads half of it

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                first = await reader.readline()
        except (TimeoutError, ConnectionError, ValueError):
            first = b""
        if not hmac.compare_digest(first.strip(), self._token.encode()):
            if first:  # a bare connect and close is `answers()` probing: nothing to say
                log.warning("control connection without the right token refused")
            writer.close()
            return
        await self._handle(reader, writer)

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
    """Whether a running peer accepts connections at `path` now (not a stale socket or
    control file)."""
    try:
        target = _target(path)
    except (OSError, ControlError):
        return False
    address: str | tuple[str, int]
    if target is not None:
        family, address = socket.AF_INET, ("127.0.0.1", target[0])
    elif sys.platform != "win32":
        family, address = socket.AF_UNIX, str(path)
    else:
        return False
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


def _target(path: Path) -> tuple[int, str] | None:
    """None for a Unix socket; else the TCP fallback's port and token, read from the file
    (a few bytes on the local disk: read in place)."""
    if stat.S_ISSOCK(path.stat().st_mode):
        return None
    try:
        where = json.loads(path.read_text(encoding="ascii"))
        return int(where["tcp"]), str(where["token"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ControlError(f"{path} is not a control socket nor a control file") from exc


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    target = _target(path)
    if target is None:
        if sys.platform == "win32":  # no Unix socket can be there
            raise ControlError(f"{path} is not a control file")
        return await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST)
    port, token = target
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_REQUEST)
    writer.write(token.encode() + b"\n")
    return reader, writer


async def call(path: Path, command: str, args: dict[str, Any], wait: float = 60.0) -> Any:
    """Run one command on the peer listening at `path`. Raises ConnectionError (or
    FileNotFoundError) if none is."""
    reader, writer = await _connect(path)
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
