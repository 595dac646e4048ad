"""Every Tor error: one base, `TorError`, and what failed."""

from __future__ import annotations


class TorError(Exception):
    """Anything Tor-related that failed; the message says what and, if known, why."""


class TorNotFound(TorError):
    """No tor binary to start."""


class TorStartFailed(TorError):
    """tor exited, refused our configuration or never opened its control port."""


class TorClosed(TorError):
    """The manager is closed (or was never started)."""


class TorTimeout(TorError, TimeoutError):
    """A bounded wait on Tor ran out (bootstrap, descriptor upload, a dial)."""


class OnionKeyInvalid(TorError, ValueError):
    """A stored onion key is not a 64-byte ed25519 expanded secret key."""


class OnionAddressInvalid(TorError, ValueError):
    """Not a v3 onion address (wrong form, version or checksum)."""


class OnionUnreachable(TorError, ConnectionError):
    """tor could not open a stream to the onion; `code` is tor's SOCKS reply code.
    A ConnectionError, so a dialer's `except OSError` treats it as any failed connect."""

    def __init__(self, address: str, code: int, message: str) -> None:
        self.address = address
        self.code = code
        super().__init__(f"cannot reach {address}: {message}")
