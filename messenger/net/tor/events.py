"""What the manager reports, on the event loop."""

from __future__ import annotations

from dataclasses import dataclass


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
