"""The Tor reach worker (messenger/net/reach.py) without a Tor network: its key handling,
what it reports when tor cannot start, and which addresses each dialer takes. The end-to-end
path over a real private Tor network is tests/tor/test_service_tor.py."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messenger.events import TorStatusChanged
from messenger.net.reach import BLOB_ONION_KEY, ONION_PORT, TorReach, is_onion_address
from messenger.net.tor import TorError, TorSettings, TorTiming, onion_address_from_key

from .fake_ports import Events, InlineDb, Tasks

pytestmark = pytest.mark.timeout(30)

ONION = "a" * 56 + ".onion"


class Blobs:
    """The two Repository calls the worker makes (a dict instead of the database)."""

    def __init__(self, **blobs: bytes) -> None:
        self.blobs = dict(blobs)

    def get_blob(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    def set_blob(self, name: str, value: bytes) -> None:
        self.blobs[name] = value


def expanded_key(seed: bytes) -> bytes:
    """An ed25519 expanded secret key as tor makes them (clamped scalar || prefix)."""
    digest = bytearray(hashlib.sha512(seed).digest())
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return bytes(digest)


def make_reach(
    tmp_path: Any, blobs: Blobs, stored: dict[str, list[str]] | None = None
) -> tuple[TorReach, Events, Tasks, list[str]]:
    events, tasks, pokes = Events(), Tasks(), []

    async def addresses(contact_id: str) -> list[str]:
        return (stored or {}).get(contact_id, [])

    reach = TorReach(
        folder=tmp_path,
        # A tor binary that does not exist: start fails as on a machine without tor.
        settings=TorSettings(tor_binary=str(tmp_path / "no-tor"), timing=TorTiming(launch=5)),
        db=InlineDb(),
        repo=blobs,  # type: ignore[arg-type]
        emit=events,
        tasks=tasks,
        addresses=addresses,
        on_ready=lambda: pokes.append("ready"),
        via_tor=lambda conn: False,
    )
    return reach, events, tasks, pokes


@pytest.mark.parametrize(
    ("text", "onion"),
    [
        (f"{ONION}:{ONION_PORT}", True),
        (f"{ONION.upper()}:1", True),
        ("192.168.1.2:40404", False),
        ("[2001:db8::1]:40404", False),
        ("onion.example:1", False),
        ("alice-laptop.local:40404", False),
    ],
)
def test_is_onion_address(text: str, onion: bool) -> None:
    assert is_onion_address(text) is onion


@given(st.text(max_size=80))
def test_is_onion_address_never_raises(text: str) -> None:
    assert isinstance(is_onion_address(text), bool)


async def test_stored_key_gives_the_address_before_tor_runs(tmp_path: Any) -> None:
    key = expanded_key(b"alice")
    reach, *_ = make_reach(tmp_path, Blobs(**{BLOB_ONION_KEY: key}))
    assert reach.address is None
    await reach.load()
    assert reach.address == f"{onion_address_from_key(key)}:{ONION_PORT}"


async def test_without_tor_start_fails_plainly_and_offers_no_routes(tmp_path: Any) -> None:
    blobs = Blobs()
    stored = {"bob": [f"{ONION}:{ONION_PORT}", "10.0.0.2:40404"]}
    reach, events, tasks, pokes = make_reach(tmp_path, blobs, stored)
    await reach.load()
    reach.start(("127.0.0.1", 40404))
    for task in list(tasks.tasks):
        await task
    states = [e.state for e in events.of(TorStatusChanged)]
    assert states == ["starting", "failed"]
    failed = events.of(TorStatusChanged)[-1]
    assert failed.error is not None and "not found" in failed.error
    assert reach.address is None and BLOB_ONION_KEY not in blobs.blobs  # nothing invented
    assert await reach.routes("bob") == []
    assert pokes == []
    with pytest.raises(TorError):
        await reach.dial(ONION, ONION_PORT, isolation="bob", within=0.05)
    await reach.aclose()
    assert events.of(TorStatusChanged)[-1].state == "off"


async def test_damaged_stored_key_is_kept_and_tor_stays_off(tmp_path: Any) -> None:
    damaged = os.urandom(63)
    blobs = Blobs(**{BLOB_ONION_KEY: damaged})
    reach, events, tasks, _ = make_reach(tmp_path, blobs)
    await reach.load()  # does not raise: the rest of the service must run
    reach.start(("127.0.0.1", 40404))
    assert not tasks.tasks  # no tor launched
    (status,) = events.of(TorStatusChanged)
    assert status.state == "failed" and status.error and "damaged" in status.error
    assert blobs.blobs[BLOB_ONION_KEY] == damaged  # never silently replaced
    assert reach.manager is None
