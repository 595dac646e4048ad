"""Reconnect handshakes and profile unlock.

1. IKpsk2 reconnect handshakes per second between two befriended identities:
   - in memory: the sans-I/O `Session` pair (ContactTarget on one side, a small
     authority on the other), bytes handed across directly;
   - over loopback: open a TCP connection to a running peer's port, run a RECONNECT
     session to Established, say Close and wait until the peer has done its bookkeeping
     and closed its end (a full reconnect cycle as a service sees it).
   Raw baseline, same run: a plain asyncio TCP connect + close loop on loopback.
2. Profile unlock: `ProfileDir.database_key` (Argon2id) + `open_database` (SQLCipher,
   schema check) for a passphrase profile with KdfParams.moderate() (the default) and
   interactive(). Raw baseline: opening a plain unencrypted sqlite3 database.

No targets: these rows are for the record.

    python -m bench.bench_handshake [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from messenger.identity import Identity, contact_id
from messenger.profile import KdfParams, ProfileDir
from messenger.protocol import wire
from messenger.protocol.noise import KeyPair
from messenger.protocol.session import (
    Closed,
    ContactMatch,
    ContactTarget,
    Established,
    Rejected,
    Session,
    SessionEvent,
)
from messenger.storage.database import open_database

from .common import (
    Result,
    fmt_rate,
    fmt_time,
    parse_args,
    percentile,
    print_table,
    quiet_logging,
    raw_connect_close,
    two_peers,
)

PASSPHRASE = "correct horse battery staple"


# -- in memory --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    identity: Identity
    hello: wire.Hello

    @property
    def static(self) -> KeyPair:
        return KeyPair(self.identity.static_private, self.identity.static_public)


def _side(name: str) -> _Side:
    identity = Identity.generate()
    hello = wire.Hello(
        ed25519_public=identity.ed25519_public,
        static_certificate=identity.static_certificate,
        display_name=name,
        listen_port=0,
        addresses=(),
    )
    return _Side(identity, hello)


class _Authority:
    """The responder's answers: one known contact, no invites."""

    def __init__(self, contact: Identity, psk: bytes) -> None:
        self._ed25519 = contact.ed25519_public
        self._match = ContactMatch(contact_id(contact.ed25519_public), psk)

    def invite_psk(self, invite_id: bytes) -> bytes | wire.RejectCode | None:
        return None

    def match_contact(self, remote_static: bytes, hello: wire.Hello) -> ContactMatch | None:
        return self._match if hello.ed25519_public == self._ed25519 else None


def _established(events: list[SessionEvent]) -> bool:
    for event in events:
        if isinstance(event, Closed | Rejected):
            raise RuntimeError(f"handshake failed: {event}")
    return any(isinstance(event, Established) for event in events)


def _drive(initiator: Session, responder: Session, max_flights: int = 6) -> None:
    """Hand bytes across until both sides report Established (the responder may wait for
    the initiator's first transport frame as key confirmation)."""
    initiator_done = responder_done = False
    for _ in range(max_flights):
        to_responder = initiator.data_to_send()
        if to_responder:
            responder_done |= _established(responder.receive_data(to_responder))
        to_initiator = responder.data_to_send()
        if to_initiator:
            initiator_done |= _established(initiator.receive_data(to_initiator))
        if initiator_done and responder_done:
            return
    raise RuntimeError("handshake did not complete")


def in_memory_handshakes(count: int) -> float:
    """Complete IKpsk2 handshakes per second, both sessions driven in this thread."""
    import nacl.utils

    a, b = _side("Alice"), _side("Bob")
    psk = nacl.utils.random(32)
    target = ContactTarget(
        contact_id(b.identity.ed25519_public),
        b.identity.ed25519_public,
        b.identity.static_public,
        psk,
    )
    authority = _Authority(a.identity, psk)
    a_static, b_static = a.static, b.static
    start = time.perf_counter()
    for _ in range(count):
        initiator = Session(initiator=True, static=a_static, hello=a.hello, target=target)
        responder = Session(initiator=False, static=b_static, hello=b.hello, authority=authority)
        _drive(initiator, responder)
    return count / (time.perf_counter() - start)


# -- over loopback ------------------------------------------------------------------------------


async def _reconnect_once(port: int, session_args: dict[str, object]) -> float:
    """One full reconnect cycle; returns the seconds from connect to Established."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = Session(**session_args)  # type: ignore[arg-type]
        writer.write(session.data_to_send())
        while not session.established:
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("the peer closed during the handshake")
            _established(session.receive_data(data))
            writer.write(session.data_to_send())  # e.g. a key-confirmation frame
        established = time.perf_counter() - start
        session.close("benchmark done")
        writer.write(session.data_to_send())
        # The peer answers our Close by closing its end once it has handled the session
        # (presence update and outbox check included).
        while await reader.read(65536):
            pass
        return established
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def loopback_handshakes(count: int) -> tuple[float, list[float]]:
    """(full reconnect cycles per second, seconds to Established per cycle)."""
    # B must not dial A (which is closed below) more than it must: a long dial backoff.
    async with two_peers(dial_base=5.0, dial_cap=60.0) as pair:
        a, b = pair.a, pair.b
        keys = a.contact_keys.keys(pair.b_at_a)
        session_args: dict[str, object] = {
            "initiator": True,
            "static": a.links.static_keypair(),
            "hello": a.links.hello(),
            "target": ContactTarget(pair.b_at_a, keys.ed25519_public, keys.x25519_public, keys.psk),
        }
        # A's own service steps aside: the benchmark plays A from here on.
        await a.aclose()
        port = b.listen_port
        assert port is not None
        for _ in range(5):  # warm-up
            await _reconnect_once(port, session_args)
        to_established: list[float] = []
        start = time.perf_counter()
        for _ in range(count):
            to_established.append(await _reconnect_once(port, session_args))
        rate = count / (time.perf_counter() - start)
    return rate, to_established


# -- profile unlock -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unlock:
    params: KdfParams
    total: float  # median seconds: database_key + open_database
    kdf: float
    open: float


def _make_profile(path: Path, params: KdfParams) -> ProfileDir:
    profile = ProfileDir(path)
    key, _ = profile.prepare_new(PASSPHRASE, kdf=params)
    open_database(profile.db_path, key, create=True).dispose()
    return profile


def measure_unlock(root: Path, name: str, params: KdfParams, repeats: int) -> Unlock:
    profile = _make_profile(root / name, params)
    kdf: list[float] = []
    opened: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        key = profile.database_key(PASSPHRASE)
        t1 = time.perf_counter()
        engine = open_database(profile.db_path, key)
        t2 = time.perf_counter()
        engine.dispose()
        kdf.append(t1 - t0)
        opened.append(t2 - t1)
    totals = [k + o for k, o in zip(kdf, opened, strict=True)]
    return Unlock(
        params, statistics.median(totals), statistics.median(kdf), statistics.median(opened)
    )


def measure_plain_sqlite(root: Path, repeats: int) -> float:
    """Median seconds to open a plain sqlite3 file and read its schema, then close it."""
    path = root / "plain.db"
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        con.commit()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        con = sqlite3.connect(path)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        con.close()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def unlock_all(quick: bool) -> tuple[list[Unlock], float]:
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-unlock-") as tmp:
        root = Path(tmp)
        unlocks = [
            measure_unlock(root, "moderate", KdfParams.moderate(), 1 if quick else 3),
            measure_unlock(root, "interactive", KdfParams.interactive(), 2 if quick else 5),
        ]
        raw = measure_plain_sqlite(root, 50 if quick else 500)
    return unlocks, raw


# -- all together ---------------------------------------------------------------------------


async def run(quick: bool = False) -> list[Result]:
    memory_count = 50 if quick else 400
    loop_count = 30 if quick else 200
    raw_count = 200 if quick else 1000

    raw_before = await raw_connect_close(raw_count)
    memory_rate = await asyncio.to_thread(in_memory_handshakes, memory_count)
    loop_rate, to_established = await loopback_handshakes(loop_count)
    raw_after = await raw_connect_close(raw_count)
    raw = statistics.median([raw_before, raw_after])
    unlocks, raw_open = await asyncio.to_thread(unlock_all, quick)

    results = [
        Result(
            name="IKpsk2 reconnect handshakes, in memory (Session pair, both sides)",
            result=fmt_rate(memory_rate, "hs"),
            baseline=f"{fmt_rate(raw, 'conn')} (asyncio TCP connect+close)",
            ratio=memory_rate / raw,
            ratio_text=f"{memory_rate / raw:.2f}x",
        ),
        Result(
            name="IKpsk2 reconnect over loopback (connect, handshake, Close, peer done)",
            result=(
                f"{fmt_rate(loop_rate, 'hs')}; to Established p50 "
                f"{fmt_time(percentile(to_established, 50))}, "
                f"p99 {fmt_time(percentile(to_established, 99))}"
            ),
            baseline=f"{fmt_rate(raw, 'conn')} (asyncio TCP connect+close)",
            ratio=loop_rate / raw,
            ratio_text=f"{loop_rate / raw:.2f}x",
        ),
    ]
    for unlock, label in zip(unlocks, ("moderate, the default", "interactive"), strict=True):
        results.append(
            Result(
                name=f"profile unlock, {label} ({unlock.params.describe()})",
                result=(
                    f"{fmt_time(unlock.total)} (Argon2id {fmt_time(unlock.kdf)} "
                    f"+ open_database {fmt_time(unlock.open)})"
                ),
                baseline=f"{fmt_time(raw_open)} (plain sqlite3 open)",
                ratio=unlock.total / raw_open,
                ratio_text=f"{unlock.total / raw_open:,.0f}x",
            )
        )
    return results


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logging()
    results = asyncio.run(run(quick=args.quick))
    print_table("Handshakes and unlock", results)


if __name__ == "__main__":
    main()
