"""Repro of issue 14, item 1 (not a benchmark: there is no raw baseline for "stuck").

The receiver's profile on a 20 MiB tmpfs, filled to the last byte with a filler file; the
sender sends 40 messages; then the filler is deleted. Prints how many stayed queued at the
sender while the disk was full and how long after the deletion they were all delivered
(each once), with the service's production dial timings. Needs root (mount).

    sudo .venv/bin/python -m bench.repro_disk_full
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from messenger.service import PeerService, ServiceConfig

MESSAGES = 40
GIVE_UP = 60.0  # seconds to wait for delivery after the space is back


def fill(folder: Path) -> Path:
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


async def poll(done: Callable[[], Awaitable[bool]], limit: float) -> None:
    """Until done() or `limit` seconds (a repro watches, so polling is fine here)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            while True:
                if await done():
                    return
                await asyncio.sleep(0.05)


async def queued(sender: PeerService, contact_id: str) -> int:
    return (await sender.chat.outbox_counts()).get(contact_id, 0)


async def repro(root: Path, small: Path) -> None:
    cfg = ServiceConfig(listen_host="127.0.0.1", listen_port=0)
    alice, _ = await PeerService.create_profile(root / "alice", "Alice", None, config=cfg)
    bob, _ = await PeerService.create_profile(small / "bob", "Bob", None, config=cfg)
    try:
        code, _ = await alice.invites.create_invite()
        await bob.invites.accept_invite(code)

        async def online() -> bool:
            return alice.contacts.is_online(bob.contact_id) and bob.contacts.is_online(
                alice.contact_id
            )

        await poll(online, GIVE_UP)
        filler = fill(small)
        for i in range(MESSAGES):
            await alice.chat.send_text(bob.contact_id, f"{i} " + "x" * 2000)
        await asyncio.sleep(3.0)  # a repro, not a test: give it time to go wrong
        stuck = await queued(alice, bob.contact_id)
        print(
            f"sent {MESSAGES}; 3 s later, disk full: {stuck} queued at the sender "
            f"(receiver shown online: {alice.contacts.is_online(bob.contact_id)})"
        )
        filler.unlink()
        started = time.monotonic()

        async def delivered() -> bool:
            return await queued(alice, bob.contact_id) == 0

        await poll(delivered, GIVE_UP)
        took = time.monotonic() - started
        ids = [m.msg_id for m in await bob.chat.history(alice.contact_id, limit=10 * MESSAGES)]
        print(
            f"filler deleted: {await queued(alice, bob.contact_id)} still queued after "
            f"{took:.2f} s; the receiver holds {len(ids)} ({len(set(ids))} distinct)"
        )
    finally:
        await alice.aclose()
        await bob.aclose()


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="chinwag-diskfull-"))
    small = root / "small"
    small.mkdir()
    subprocess.run(
        ["/bin/mount", "-t", "tmpfs", "-o", "size=20m,mode=0700", "tmpfs", str(small)],
        check=True,
    )
    try:
        asyncio.run(repro(root, small))
    finally:
        subprocess.run(["/bin/umount", "-l", str(small)], check=False)


if __name__ == "__main__":
    main()
