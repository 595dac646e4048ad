"""Tor settings: from the environment, extra torrc lines, timeouts, the tor binary."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import TorError, TorNotFound

TOR_CONFIG_ENV = "CHINWAG_TOR_CONFIG"
TOR_CONTROL_ENV = "CHINWAG_TOR_CONTROL"
TOR_CONTROL_PASSWORD_ENV = "CHINWAG_TOR_CONTROL_PASSWORD"  # noqa: S105 (a variable's name)

# Options the manager sets itself; an extra torrc line naming one is refused, since it
# would break how we find, authenticate to or own the process.
OWNED_OPTIONS = frozenset(
    name.lower()
    for name in (
        "DataDirectory",
        "ControlPort",
        "ControlPortWriteToFile",
        "ControlSocket",
        "CookieAuthentication",
        "CookieAuthFile",
        "HashedControlPassword",
        "SocksPort",
        "RunAsDaemon",
        "__OwningControllerProcess",
        "__ReloadTorrcOnSIGHUP",
        "HiddenServiceDir",
    )
)


@dataclass(frozen=True, slots=True)
class TorTiming:
    """Bounds on every wait, in seconds. Tor is slow where a LAN is not: a first circuit
    to an onion takes 10-30 s on the public network, bootstrap from nothing can take
    minutes on a poor link; tor's own SOCKS timeout is 120 s."""

    launch: float = 60.0  # process start to an authenticated control connection
    bootstrap: float = 300.0
    publish: float = 180.0  # ADD_ONION to the first descriptor upload
    dial: float = 90.0
    # One SOCKS attempt; a stalled one is given up and retried on fresh circuits (a lost
    # rendezvous leaves tor waiting until its own 120 s SOCKS timeout).
    dial_attempt: float = 40.0
    dial_attempts: int = 2
    stop: float = 5.0  # after closing the control connection, before SIGTERM/SIGKILL
    restart_base: float = 1.0
    restart_cap: float = 60.0


@dataclass(frozen=True, slots=True)
class TorSettings:
    tor_binary: str | None = None  # None: `tor` on PATH or in /usr/sbin
    extra_lines: tuple[str, ...] = ()  # extra torrc lines for a launched tor
    control: str | None = None  # attach: "host:port", "port" or a unix socket path
    control_password: str | None = None
    timing: TorTiming = TorTiming()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, timing: TorTiming | None = None
    ) -> TorSettings:
        """CHINWAG_TOR_CONFIG (a file of torrc lines), CHINWAG_TOR_CONTROL (a running
        tor's control port), CHINWAG_TOR_CONTROL_PASSWORD."""
        env = os.environ if environ is None else environ
        lines: tuple[str, ...] = ()
        config = env.get(TOR_CONFIG_ENV)
        if config:
            try:
                text = Path(config).read_text()
            except OSError as exc:
                raise TorError(f"{TOR_CONFIG_ENV}: cannot read {config}: {exc}") from exc
            lines = parse_torrc_lines(text, source=config)
        return cls(
            extra_lines=lines,
            control=env.get(TOR_CONTROL_ENV) or None,
            control_password=env.get(TOR_CONTROL_PASSWORD_ENV) or None,
            timing=timing or TorTiming(),
        )


def parse_torrc_lines(text: str, source: str = "torrc lines") -> tuple[str, ...]:
    """Non-empty, non-comment lines; refuses options the manager owns."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        option = line.split(None, 1)[0].lower()
        if option in OWNED_OPTIONS:
            raise TorError(
                f"{source}:{number}: {line.split(None, 1)[0]} is set by Chinwag and cannot "
                "be overridden"
            )
        lines.append(line)
    return tuple(lines)


def find_tor(binary: str | None = None) -> str:
    """The tor to launch: `binary` if given, else `tor` on PATH or in /usr/sbin (Debian's
    place, missing from many users' PATH)."""
    if binary is not None:
        found = shutil.which(binary)
        if found is None:
            raise TorNotFound(f"tor binary {binary!r} not found or not executable")
        return found
    found = shutil.which("tor") or shutil.which("tor", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise TorNotFound(
            "no `tor` binary found: install Tor (Debian/Ubuntu: apt install tor; macOS: "
            f"brew install tor) or point {TOR_CONTROL_ENV} at a running Tor's control port"
        )
    return found
