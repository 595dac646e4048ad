"""The service facade the desktop app uses, on a real profile without network."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from messenger import KdfParams, PeerService, ServiceConfig, WrongPassphrase
from messenger.storage.repository import IncomingMessage, NewContact

OFFLINE = ServiceConfig(network=False)


async def _with_contact(tmp_path, name: str = "Dana") -> tuple[PeerService, str]:
    service, _ = await PeerService.create_profile(tmp_path / "p", "Me", None, config=OFFLINE)
    contact_id = os.urandom(16).hex()
    new = NewContact(
        contact_id,
        name,
        os.urandom(32),
        os.urandom(32),
        os.urandom(64),
        os.urandom(32),
        os.urandom(32),
        os.urandom(16),
        False,
        ("127.0.0.1:9",),
    )
    service.repo.add_contact(new, time.time())
    await service.aclose()
    return await PeerService.open(tmp_path / "p", None, config=OFFLINE), contact_id


async def test_change_passphrase_and_back(tmp_path):
    service, contact_id = await _with_contact(tmp_path)
    await service.change_passphrase("new secret", kdf=KdfParams.interactive())
    # The running service goes on with the new key, on new connections too.
    await service.chat.send_text(contact_id, "after the re-key")
    assert (await service.chat.history(contact_id))[-1].body == "after the re-key"
    await service.aclose()
    with pytest.raises(WrongPassphrase):
        await PeerService.open(tmp_path / "p", "old guess", config=OFFLINE)
    service = await PeerService.open(tmp_path / "p", "new secret", config=OFFLINE)
    assert [c.display_name for c in await service.contacts.all()] == ["Dana"]
    warnings = await service.change_passphrase(None)
    assert warnings  # the test keyring fails: a key file, with a warning
    await service.aclose()
    service = await PeerService.open(tmp_path / "p", None, config=OFFLINE)
    assert len(await service.contacts.all()) == 1
    await service.aclose()


async def test_search_paging_and_conversations(tmp_path):
    service, contact_id = await _with_contact(tmp_path)
    try:
        incoming = [
            IncomingMessage(os.urandom(16), i, i, 1_000 + i, f"message number {i} about otters")
            for i in range(1, 301)
        ]
        service.repo.store_incoming([(contact_id, incoming)], 5)
        await service.chat.send_text(contact_id, "a reply about badgers")

        assert [m.body for m in await service.chat.search("badg")] == ["a reply about badgers"]
        assert len(await service.chat.search("otters", limit=500)) == 300
        assert (
            len(await service.chat.search("number 17", contact_id=contact_id)) == 11
        )  # 17, 170-179
        assert len(await service.chat.search("number 17 about", contact_id=contact_id)) == 1
        assert await service.chat.search("   ") == []
        assert await service.chat.search('"quote" OR *') == []  # operators are just words

        newest = await service.chat.history(contact_id, limit=50)
        older = await service.chat.history(
            contact_id, limit=50, before=(newest[0].lamport, newest[0].msg_id)
        )
        newer = await service.chat.history(
            contact_id, limit=50, after=(older[-1].lamport, older[-1].msg_id)
        )
        assert newer == newest
        assert older[-1].lamport < newest[0].lamport

        (summary,) = await service.chat.conversations()
        assert summary.contact.id == contact_id
        assert summary.last_message is not None
        assert summary.last_message.body == "a reply about badgers"
        assert summary.unread == 300 and not summary.online
    finally:
        await service.aclose()


async def test_small_writes_never_run_beside_a_database_job(tmp_path):
    """A small send is committed on the loop thread only while the database thread is
    idle; behind a running job (even one whose awaiting task was cancelled) it waits,
    so the one connection is never used by two threads and writes keep their order."""
    service, contact_id = await _with_contact(tmp_path)
    try:
        gate = threading.Event()
        started = threading.Event()
        order: list[str] = []

        def slow_job() -> None:
            started.set()
            gate.wait(timeout=30)
            order.append("job")

        real_queue = service.repo.queue_outgoing_many

        def tracked_queue(*args: object) -> object:
            order.append("send")
            return real_queue(*args)  # type: ignore[arg-type]

        service.repo.queue_outgoing_many = tracked_queue  # type: ignore[method-assign]
        job = asyncio.ensure_future(service.db.run(slow_job))
        assert await asyncio.to_thread(started.wait, 30)
        job.cancel()  # the thread still runs it
        send = asyncio.ensure_future(service.chat.send_text(contact_id, "after the job"))
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert order == []  # still behind the job
        gate.set()
        record = await send
        assert order == ["job", "send"]
        assert (await service.chat.history(contact_id))[-1].msg_id == record.msg_id
        # Idle again: the next small send runs at once, on the loop thread.
        order.clear()
        await service.chat.send_text(contact_id, "inline")
        assert order == ["send"]
        assert service.db.pending == 0
    finally:
        gate.set()
        await service.aclose()
