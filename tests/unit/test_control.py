"""The control socket: a Unix socket, and the loopback TCP + token file used where there are
no Unix sockets (Windows). Both run here, over real sockets; the API behind them is a small
fake of the one method the server uses (`call`)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from messenger.cli import control
from messenger.cli.control import ControlError, ControlServer


class EchoApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, command: str, args: dict[str, Any]) -> Any:
        self.calls.append((command, args))
        if command == "fail":
            raise ValueError("it failed")
        return {"echo": args}


@pytest.fixture(params=["unix", "tcp"])
async def server(request, tmp_path: Path):
    unix = request.param == "unix"
    if unix and not control.unix_sockets():
        pytest.skip("no Unix sockets on this platform")
    api = EchoApi()
    srv = ControlServer(api, tmp_path / "control.sock", unix=unix)  # type: ignore[arg-type]
    await srv.start()
    yield srv, api
    await srv.aclose()


async def test_a_command_and_an_error_come_back(server) -> None:
    srv, api = server
    assert await control.call(srv.path, "send", {"text": "hi"}) == {"echo": {"text": "hi"}}
    with pytest.raises(ControlError, match="it failed"):
        await control.call(srv.path, "fail", {})
    assert [c for c, _ in api.calls] == ["send", "fail"]
    assert stat.S_IMODE(srv.path.stat().st_mode) == 0o600  # the owner's only


async def test_closing_removes_the_socket_or_file(server) -> None:
    srv, _api = server
    await srv.aclose()
    assert not srv.path.exists()
    with pytest.raises(FileNotFoundError):
        await control.call(srv.path, "send", {})


async def test_tcp_fallback_refuses_a_client_without_the_token(tmp_path: Path) -> None:
    api = EchoApi()
    srv = ControlServer(api, tmp_path / "control.sock", unix=False)  # type: ignore[arg-type]
    await srv.start()
    try:
        where = json.loads(srv.path.read_text())
        reader, writer = await asyncio.open_connection("127.0.0.1", where["tcp"])
        writer.write(b"0" * 64 + b"\n")
        writer.write(json.dumps({"cmd": "send", "args": {}}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # hung up, no answer
        writer.close()
        assert api.calls == []
        # The token is long and random: each start makes a new one.
        old_token = where["token"]
        await srv.aclose()
        await srv.start()
        assert json.loads(srv.path.read_text())["token"] != old_token
        assert len(old_token) == 64
    finally:
        await srv.aclose()


async def test_a_stale_tcp_file_of_a_killed_run_is_refused(tmp_path: Path) -> None:
    """What the CLI treats as "no running peer": the port in the file is closed."""
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = holder.sockets[0].getsockname()[1]
    holder.close()
    await holder.wait_closed()
    path = tmp_path / "control.sock"
    path.write_text(json.dumps({"tcp": port, "token": "ab" * 32}))
    with pytest.raises(ConnectionRefusedError):
        await control.call(path, "send", {})


async def test_a_file_that_is_neither_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("not json")
    with pytest.raises(ControlError, match="not a control socket nor a control file"):
        await control.call(path, "send", {})
