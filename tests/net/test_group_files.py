"""Files shared in a group (docs/protocol.md §16.9, §17) between real peers on 127.0.0.1:
signed group offers, every member that holds the file serving it, catch-up of offers."""

from __future__ import annotations

import pytest

from messenger import FileError
from messenger.events import FileOfferRejected, GroupMessageAdded
from messenger.files.chunks import DEFAULT_CHUNK_SIZE, stored_offset
from messenger.groups import NO_SIGNATURE, group_key, sign_message
from messenger.protocol import wire
from messenger.records import TransferState
from messenger.service import PeerService

from .conftest import Recorder, wait_for
from .test_files import MiB, complete, digest, random_file
from .test_groups import _all_have, _group, _reopen, _star

pytestmark = pytest.mark.timeout(180)


def _has(peer: PeerService, tid: str) -> bool:
    return any(t.id == tid for t in peer.files.transfers())


async def _mesh(peers: list[PeerService]) -> None:
    for p in peers:
        for q in peers:
            if p is not q:
                await wait_for(lambda p=p, q=q: p.contacts.is_online(q.contact_id), what="mesh")


async def test_members_that_downloaded_serve_the_next_one(make_peer, tmp_path):
    """The admin shares a file; two members fetch it; the third then downloads from all
    three holders at once, though two of them are no contacts of its own."""
    peers = await _star(make_peer)
    group_id = await _group(peers)
    admin, bea, cai, dov, eli = peers
    await _mesh(peers)
    events = Recorder(dov)
    source = random_file(tmp_path / "plans.bin", 40 * MiB + 777)
    sent = await admin.files.send_to_group(group_id, source)
    assert sent.outgoing and sent.groups == (group_id,)
    tid = sent.id
    for p in (bea, cai, dov, eli):
        await wait_for(lambda p=p: _has(p, tid), what=f"{p.display_name} has the offer")
        offer = p.files.find(tid)
        assert offer.state is TransferState.OFFERED and offer.name == "plans.bin"
        assert offer.sources == (admin.contact_id,) and not offer.outgoing
    # The offer is a group message, signed by the admin, linked to the transfer.
    (message,) = [e.message for e in events.of(GroupMessageAdded)]
    assert message.file_id == tid and "plans.bin" in message.body
    assert dov.files.for_message(message.msg_id).id == tid
    assert [m.file_id for m in await eli.groups.history(group_id)] == [tid]

    for holder in (bea, cai):
        await holder.files.accept(tid)
        await complete(holder, tid)
    # Finishing told the group: dov now knows three sources.
    await wait_for(lambda: len(dov.files.find(tid).sources) == 3, what="three sources")
    await dov.files.configure(rate_limit=30 * MiB)  # long enough for all three to join in
    await dov.files.accept(tid)
    await complete(dov, tid)
    used = dict(dov.files.find(tid).chunks_by_source)
    assert set(used) == {admin.contact_id, bea.contact_id, cai.contact_id}
    assert all(n > 0 for n in used.values()) and sum(used.values()) == 41
    assert digest(await dov.files.save_as(tid, tmp_path / "out.bin")) == digest(source)
    # The holders' stores hold ciphertext only.
    plain = source.read_bytes()[: 1 << 16]
    for holder in (admin, bea, cai, dov):
        stored = holder.files.store.path(bytes.fromhex(tid)).read_bytes()
        assert plain[:64] not in stored and plain[40_000:40_064] not in stored


async def test_a_member_serving_bad_chunks_is_dropped(make_peer, tmp_path):
    peers = (await _star(make_peer))[:4]
    admin, bea, cai, dov = peers
    group_id = await _group(peers)
    await _mesh(peers)
    source = random_file(tmp_path / "photo.raw", 20 * MiB)
    tid = (await admin.files.send_to_group(group_id, source)).id
    for holder in (bea, cai):
        await wait_for(lambda h=holder: _has(h, tid))
        await holder.files.accept(tid)
        await complete(holder, tid)
    # Damage every chunk in cai's store: whatever cai serves is wrong.
    store_file = cai.files.store.path(bytes.fromhex(tid))
    data = bytearray(store_file.read_bytes())
    for offset in range(100, len(data), stored_offset(DEFAULT_CHUNK_SIZE, 1)):
        data[offset] ^= 0x55
    store_file.write_bytes(data)
    await wait_for(lambda: len(dov.files.find(tid).sources) == 3, what="three sources")
    await dov.files.configure(rate_limit=20 * MiB)
    await dov.files.accept(tid)
    await complete(dov, tid)
    record = dov.files.find(tid)
    assert record.dropped_sources == (cai.contact_id,)
    assert sum(dict(record.chunks_by_source).values()) == 20
    assert digest(await dov.files.save_as(tid, tmp_path / "out.bin")) == digest(source)


async def test_an_offer_missed_while_away_arrives_by_catch_up_and_others_serve_it(
    make_peer, tmp_path
):
    """dov is away when the file is shared and the author is gone when dov returns: the
    offer comes by catch-up from another member, and so do the chunks."""
    peers = (await _star(make_peer))[:4]
    _admin, bea, cai, dov = peers
    group_id = await _group(peers)
    await _mesh(peers)
    await dov.aclose()
    source = random_file(tmp_path / "notes.pdf", 3 * MiB + 5)
    tid = (await bea.files.send_to_group(group_id, source)).id
    await wait_for(lambda: _has(cai, tid))
    await cai.files.accept(tid)
    await complete(cai, tid)
    await bea.aclose()  # the author is gone
    dov = await _reopen(make_peer, "dov")
    await _all_have([dov], group_id, 1)
    await wait_for(lambda: _has(dov, tid), what="dov has the offer")
    assert (await dov.groups.history(group_id))[0].file_id == tid
    # cai told dov it holds the file when their session came up.
    await wait_for(lambda: cai.contact_id in dov.files.find(tid).sources, what="cai a source")
    await dov.files.accept(tid)
    await complete(dov, tid)
    assert dict(dov.files.find(tid).chunks_by_source) == {cai.contact_id: 4}
    assert digest(await dov.files.save_as(tid, tmp_path / "out.pdf")) == digest(source)
    # After a restart the file is still linked to its group message.
    await dov.aclose()
    dov = await _reopen(make_peer, "dov")
    record = dov.files.find(tid)
    assert record.state is TransferState.COMPLETE and record.groups == (group_id,)
    (message,) = await dov.groups.history(group_id)
    assert dov.files.for_message(message.msg_id).id == tid


async def test_a_hostile_group_offer_stays_text_and_is_refused_with_a_reason(make_peer, tmp_path):
    peers = (await _star(make_peer))[:3]
    admin, bea, cai = peers
    group_id = await _group(peers)
    key = group_key(group_id)  # the group id on the wire
    events = Recorder(admin)
    me = bea.identity.ed25519_public
    bad = wire.GroupAttachment(bytes(32), "../../etc/passwd", "text/plain", 10, 1 << 20, bytes(32))
    huge = wire.GroupAttachment(b"\1" * 32, "big.iso", "application/x-iso", -5, 1 << 20, bytes(32))
    for seq, attachment in ((1, bad), (2, huge)):
        offer = sign_message(
            bea.identity,
            wire.GroupMessage(
                key, me, 1, seq, seq, 0, f"\U0001f4ce offer {seq}", NO_SIGNATURE, attachment
            ),
        )
        bea.links.connection(admin.contact_id).send(offer)
    await _all_have([admin], group_id, 2)
    await wait_for(lambda: len(events.of(FileOfferRejected)) == 2, what="two refusals")
    reasons = [e.reason for e in events.of(FileOfferRejected)]
    assert "path separator" in reasons[0] and "negative" in reasons[1], reasons
    assert admin.files.transfers() == []
    # The messages are there (the group's history stays whole), as text.
    assert [m.body for m in await admin.groups.history(group_id)] == [
        "\U0001f4ce offer 1",
        "\U0001f4ce offer 2",
    ]
    # Tampering with the attachment breaks the author's signature: a member passing the
    # offer on (cai) cannot swap the file.
    forged = sign_message(
        bea.identity,
        wire.GroupMessage(key, me, 1, 3, 3, 0, "fine", NO_SIGNATURE, None),
    )
    tampered = wire.GroupMessage(key, me, 1, 3, 3, 0, "fine", forged.signature, bad)
    rejected = admin.groups.rejected
    cai.links.connection(admin.contact_id).send(tampered)
    await wait_for(lambda: admin.groups.rejected == rejected + 1, what="tampered refused")
    assert await admin.groups.repo_count(group_id) == 2


async def test_a_file_received_one_to_one_is_forwarded_into_a_group(make_peer, tmp_path):
    """Bea got a file from the admin in their 1:1 chat and shares it in the group; cai
    (no contact of bea) downloads it from her, and only a complete file can be passed on."""
    admin, bea, cai = (await _star(make_peer))[:3]
    group_id = await _group([admin, bea, cai], "Lab")
    await _mesh([admin, bea, cai])
    source = random_file(tmp_path / "scan.pdf", 3 * MiB + 99)
    tid = (await admin.files.send_file(bea.contact_id, source)).id
    await wait_for(lambda: _has(bea, tid), what="the 1:1 offer at bea")
    with pytest.raises(FileError, match="only a complete file"):
        await bea.files.forward_to_group(tid, group_id)  # not downloaded yet
    await bea.files.accept(tid)
    await complete(bea, tid)
    forwarded = await bea.files.forward_to_group(tid, group_id)
    assert forwarded.groups == (group_id,)
    await wait_for(lambda: _has(cai, tid), what="the group offer at cai")
    (message,) = await cai.groups.history(group_id)
    assert message.author_name == "Bea" and cai.files.for_message(message.msg_id).id == tid
    await cai.files.accept(tid)
    await complete(cai, tid)
    assert digest(await cai.files.save_as(tid, tmp_path / "got.pdf")) == digest(source)
    # Not into a group one is not a member of.
    with pytest.raises(FileError, match="member of"):
        await admin.files.forward_to_group(tid, "00" * 16)
