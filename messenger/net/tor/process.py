"""The tor we launch: its torrc, the process, the control port it reports, its log.

Launched tor: the system binary with its own data directory `<folder>/tor-data`, no system
torrc, `ControlPort auto` + cookie authentication, `SocksPort auto`, `__OwningControllerProcess`
= us. stem answers that with TAKEOWNERSHIP, so tor exits as soon as our control connection
closes, including when this process dies. Extra torrc lines (CHINWAG_TOR_CONFIG names a
file of them) come first so ours win; lines naming an option we own are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from .errors import TorStartFailed
from .settings import TorSettings, find_tor


def torrc_text(data: Path, log_file: Path, extra_lines: tuple[str, ...]) -> str:
    ours = [
        f"DataDirectory {data}",
        "ControlPort auto",
        f"ControlPortWriteToFile {data / 'control.port'}",
        "CookieAuthentication 1",
        f"CookieAuthFile {data / 'control_auth_cookie'}",
        "SocksPort auto",
        "ClientOnly 1",
        "RunAsDaemon 0",
        f"__OwningControllerProcess {os.getpid()}",
        f"Log notice file {log_file}",
        "AvoidDiskWrites 1",
    ]
    return "\n".join([*extra_lines, *ours]) + "\n"


def _prepare(
    settings: TorSettings, folder: Path, data_dir: Path, log_file: Path
) -> tuple[str, Path]:
    """The tor binary, and a fresh torrc in a private `data_dir`."""
    binary = find_tor(settings.tor_binary)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.mkdir(exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)  # tor refuses a data directory others can read
    port_file = data_dir / "control.port"
    port_file.unlink(missing_ok=True)
    torrc = data_dir / "torrc"
    # Owner-only from the start (the profile's files are 0600; the log names onions).
    _private_file(torrc).write_text(torrc_text(data_dir, log_file, settings.extra_lines))
    return binary, torrc


async def spawn_tor(
    settings: TorSettings, folder: Path, data_dir: Path, log_file: Path
) -> asyncio.subprocess.Process:
    """Start tor on a fresh torrc in `data_dir`; its output goes to `log_file`."""
    binary, torrc = _prepare(settings, folder, data_dir, log_file)
    with _private_file(log_file).open("ab") as out:
        return await asyncio.create_subprocess_exec(
            binary,
            "-f",
            str(torrc),
            "--defaults-torrc",
            os.devnull,
            "--ignore-missing-torrc",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C is for us; tor follows us
        )


async def wait_for_control_port(
    proc: asyncio.subprocess.Process, port_file: Path, log_file: Path
) -> tuple[str, int]:
    while True:
        if proc.returncode is not None:
            raise TorStartFailed(f"tor exited with {proc.returncode}{log_tail(log_file)}")
        # tor writes "PORT=127.0.0.1:NNNN" there once the port is open.
        with contextlib.suppress(OSError):
            text = port_file.read_text().strip()  # noqa: ASYNC240 (a few bytes)
            if text.startswith("PORT=") and text.endswith(tuple("0123456789")):
                host, _, port = text[len("PORT=") :].rpartition(":")
                return host, int(port)
        await asyncio.sleep(0.05)


def log_tail(log_file: Path, lines: int = 6) -> str:
    """tor's last log lines, for an error message ("" if there is no log)."""
    try:
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\ntor's last log lines:\n" + "\n".join(tail) if tail else ""


def _private_file(path: Path) -> Path:
    """Create `path` if needed and make it readable by its owner only."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return path
