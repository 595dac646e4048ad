"""What the manager reports (on the event loop), and tor's bootstrap status read into one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import stem.response


@dataclass(frozen=True, slots=True)
class TorBootstrap:
    """tor's bootstrap progress, as the window shows it (percent + tor's summary)."""

    percent: int
    tag: str
    summary: str


@dataclass(frozen=True, slots=True)
class OnionPublished:
    """The onion service's descriptor reached a directory: contacts can connect now."""

    address: str  # with .onion


@dataclass(frozen=True, slots=True)
class TorLost:
    """tor exited or the control connection broke; a restart follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class TorRestartFailed:
    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class TorRecovered:
    """tor is back (bootstrapped, onion re-added); `restarts` counts since start()."""

    restarts: int


TorEvent = TorBootstrap | OnionPublished | TorLost | TorRestartFailed | TorRecovered


def _parse_bootstrap_phase(text: str) -> TorBootstrap | None:
    """GETINFO status/bootstrap-phase: 'NOTICE BOOTSTRAP PROGRESS=.. TAG=.. SUMMARY=".."'
    read with stem's control-line parser."""
    line = stem.response.ControlLine(text)
    values: dict[str, str] = {}
    while not line.is_empty():
        if line.is_next_mapping(quoted=True):
            key, value = line.pop_mapping(quoted=True)
        elif line.is_next_mapping():
            key, value = line.pop_mapping()
        else:
            line.pop()
            continue
        values[str(key)] = str(value)
    return _bootstrap_from(values)


def _bootstrap_from(values: Mapping[str, str]) -> TorBootstrap | None:
    try:
        percent = int(values["PROGRESS"])
    except (KeyError, ValueError):
        return None
    return TorBootstrap(percent, values.get("TAG", ""), values.get("SUMMARY", ""))
