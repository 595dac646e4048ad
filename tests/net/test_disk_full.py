"""A full disk at the receiver (issue 14, item 1): the profile on a real, small tmpfs.

Before the fix, arriving messages that could not be stored stayed unacknowledged at the
sender for as long as the session lived. Now the receiver says "disk full" (a DiskSpace
event), and once there is room again it closes those sessions, so the senders resend:
every message arrives exactly once, with neither peer restarted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from messenger import DiskFull, DiskSpace, MessageState, PeerService
from messenger.cli.main import main as cli_main

from .conftest import Recorder, befriend, config, wait_for

pytestmark = pytest.mark.timeout(90)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "20m") -> Iterator[Path]:
    """A real tmpfs of `size` at `where` (needs root / CAP_SYS_ADMIN, else the test skips)."""
    where.mkdir()
    try:
        subprocess.run(
            ["/bin/mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc).encode()
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {detail!r}")
    try:
        yield where
    finally:
        subprocess.run(["/bin/umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system is full to the last byte."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


async def test_messages_not_stored_on_a_full_disk_arrive_once_there_is_room(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "small") as small:
        alice, _ = await PeerService.create_profile(
            tmp_path / "alice", "Alice", None, config=config(), rng=random.Random(1)
        )
        bob, _ = await PeerService.create_profile(
            small / "bob", "Bob", None, config=config(), rng=random.Random(2)
        )
        try:
            events = Recorder(bob)
            bob_id, alice_id = await befriend(alice, bob)
            filler = fill(small)
            sent: list[bytes] = []

            def full() -> bool:
                return any(e.full for e in events.of(DiskSpace))

            # SQLite may still have room in its WAL for a few pages: send until a write
            # needs space it cannot get.
            for round_ in range(50):
                for i in range(10):
                    record = await alice.chat.send_text(bob_id, f"{round_}.{i} " + "x" * 2000)
                    sent.append(record.msg_id)
                with contextlib.suppress(TimeoutError):
                    await wait_for(full, timeout=2.0)
                if full():
                    break
            assert full(), "the receiver never reported a full disk"
            message = next(e.message for e in events.of(DiskSpace) if e.full)
            assert "full" in message
            assert str(small / "bob") in message
            # Not acknowledged, so still queued at the sender; the session is still up.
            queued = (await alice.chat.outbox_counts()).get(bob_id, 0)
            assert queued > 0
            assert alice.contacts.is_online(bob_id)
            with pytest.raises(DiskFull):
                await bob.chat.send_text(alice_id, "this cannot be stored either")

            started = time.monotonic()
            filler.unlink()  # room again; nobody restarts

            async def all_arrived() -> bool:
                history = await bob.chat.history(alice_id, limit=len(sent) + 10)
                return len(history) >= len(sent)

            await wait_for(all_arrived, timeout=30.0)
            await wait_for(lambda: any(not e.full for e in events.of(DiskSpace)), timeout=10.0)

            async def none_queued() -> bool:
                return (await alice.chat.outbox_counts()).get(bob_id, 0) == 0

            await wait_for(none_queued, timeout=30.0)
            recovered = time.monotonic() - started
            history = await bob.chat.history(alice_id, limit=len(sent) + 10)
            assert [m.msg_id for m in history] == sent  # each exactly once, in order
            print(
                f"{len(sent)} sent, {queued} stuck while full, all delivered "
                f"{recovered:.2f} s after the filler was deleted"
            )
        finally:
            await alice.aclose()
            await bob.aclose()


def test_cli_on_a_full_disk_says_so_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading commands work on a full disk; a command that must write says "full" and
    exits with DiskFull's status (6), never a traceback."""
    import asyncio

    profile = tmp_path / "small" / "carol"

    async def make() -> None:
        service, _ = await PeerService.create_profile(
            profile, "Carol", None, config=config(network=False)
        )
        await service.aclose()

    with small_tmpfs(tmp_path / "small"):
        asyncio.run(make())
        fill(profile.parent)
        # With no room for SQLite's -shm file even opening it fails: "full", not "damaged".
        code = cli_main(["--profile", str(profile), "whoami"])
        out, err = capsys.readouterr()
        assert code == DiskFull.exit_code, (out, err)
        assert "is full" in err
        assert "damaged" not in err
        assert "cut short" not in err
        assert "Traceback" not in err
        code = cli_main(["--profile", str(profile), "invite", "--address", "127.0.0.1:9"])
        out, err = capsys.readouterr()
        assert code == DiskFull.exit_code == 6, (out, err)
        assert "Traceback" not in err
        assert err.startswith("chinwag-cli: the disk holding")
        assert "is full" in err


async def test_group_messages_not_stored_on_a_full_disk_catch_up_once_there_is_room(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "small") as small:
        alice, _ = await PeerService.create_profile(
            tmp_path / "alice", "Alice", None, config=config(), rng=random.Random(1)
        )
        bob, _ = await PeerService.create_profile(
            small / "bob", "Bob", None, config=config(), rng=random.Random(2)
        )
        try:
            events = Recorder(bob)
            await befriend(alice, bob)
            record = await alice.groups.create_group("Lab", [bob.contact_id])
            group_id = record.id
            await wait_for(lambda: bob.groups.get(group_id) is not None, what="bob has it")
            filler = fill(small)

            def full() -> bool:
                return any(e.full for e in events.of(DiskSpace))

            sent: list[str] = []
            for round_ in range(50):
                for i in range(10):
                    body = f"{round_}.{i} " + "y" * 2000
                    await alice.groups.send_text(group_id, body)
                    sent.append(body)
                with contextlib.suppress(TimeoutError):
                    await wait_for(full, timeout=2.0)
                if full():
                    break
            assert full(), "the receiver never reported a full disk"
            filler.unlink()

            async def all_there() -> bool:
                return await bob.groups.repo_count(group_id) >= len(sent)

            await wait_for(all_there, timeout=30.0, what="every group message at bob")
            bodies = [m.body for m in await bob.groups.history(group_id, limit=10_000)]
            assert sorted(bodies) == sorted(sent)  # each exactly once
        finally:
            await alice.aclose()
            await bob.aclose()


async def test_a_send_whose_write_fails_is_an_error_and_never_leaves(tmp_path: Path) -> None:
    """A message is stored before it leaves (protocol.md §9.3): if writing it fails (a
    full disk at the sender), send_text raises DiskFull, the sender does not show it, the
    recipient never gets it, and sending works again once there is room."""
    with small_tmpfs(tmp_path / "small") as small:
        alice, _ = await PeerService.create_profile(
            small / "alice", "Alice", None, config=config(), rng=random.Random(1)
        )
        bob, _ = await PeerService.create_profile(
            tmp_path / "bob", "Bob", None, config=config(), rng=random.Random(2)
        )
        try:
            bob_id, alice_id = await befriend(alice, bob)
            await wait_for(lambda: alice.contacts.is_online(bob_id), what="online")
            filler = fill(small)
            stored: list[str] = []
            failed: str | None = None
            for i in range(500):  # SQLite may still find room in its WAL for a while
                body = f"{i} " + "z" * 2000
                try:
                    await alice.chat.send_text(bob_id, body)
                except DiskFull:
                    failed = body
                    break
                stored.append(body)
            assert failed is not None, "the sender's disk never filled"
            mine = [m.body for m in await alice.chat.history(bob_id, limit=1000)]
            assert mine == stored  # the failed one is not shown as sent
            filler.unlink()
            after = await alice.chat.send_text(bob_id, "room again")

            async def delivered() -> bool:
                history = await alice.chat.history(bob_id, limit=1000)
                return history[-1].state is MessageState.DELIVERED

            await wait_for(delivered, timeout=10.0, what="the next one delivered")
            history = await alice.chat.history(bob_id, limit=1000)
            assert [m.body for m in history] == [*stored, "room again"]
            assert history[-1].msg_id == after.msg_id
            theirs = [m.body for m in await bob.chat.history(alice_id, limit=1000)]
            assert theirs == [*stored, "room again"]  # each stored one once, never the failed
        finally:
            await alice.aclose()
            await bob.aclose()


def test_a_lone_arrival_on_a_full_disk_is_not_stored_and_is_stored_once_there_is_room(
    tmp_path: Path,
) -> None:
    """The store of a lone arriving message runs as one autocommitted statement (no
    BEGIN/COMMIT, repository._write_one): on a full disk it raises DiskFull and leaves
    nothing behind, and the same message is stored once there is room."""
    from messenger.storage.database import open_database
    from messenger.storage.repository import IncomingMessage, Repository

    from ..contacts import random_contact

    with small_tmpfs(tmp_path / "small", size="8m") as small:
        repo = Repository(open_database(small / "db.sqlite", os.urandom(32), create=True))
        try:
            ana = random_contact("Ana")
            repo.add_contact(ana, 0)
            filler = fill(small)
            failed: IncomingMessage | None = None
            for seq in range(1, 2000):  # the WAL may hold a few more pages first
                m = IncomingMessage(os.urandom(16), seq, seq, 0, "y" * 3000)
                try:
                    repo.store_incoming([(ana.id, [m])], 0)
                except DiskFull:
                    failed = m
                    break
            assert failed is not None, "the disk never filled"
            stored = repo.message_count(ana.id)
            assert repo.message(failed.msg_id) is None
            filler.unlink()
            (record,) = repo.store_incoming([(ana.id, [failed])], 0)
            assert record.msg_id == failed.msg_id
            assert repo.message_count(ana.id) == stored + 1
        finally:
            repo.close()
