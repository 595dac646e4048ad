"""The pure parts of groups.py: signatures, roster rules, message rules, high-water marks."""

from __future__ import annotations

import dataclasses

import nacl.encoding
import nacl.hash
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messenger import GroupError
from messenger.groups import (
    MESSAGE_CONTEXT,
    NO_SIGNATURE,
    Group,
    GroupState,
    Marks,
    check_roster_shape,
    group_key,
    group_psk,
    message_id,
    newer,
    roster_hash,
    sign_message,
    sign_roster,
    verify,
)
from messenger.identity import Identity
from messenger.protocol import wire


def member(identity: Identity, joined: int = 1) -> wire.GroupMember:
    return wire.GroupMember(
        identity.ed25519_public,
        identity.static_public,
        identity.static_certificate,
        b"d" * 32,
        "someone",
        joined,
        ("127.0.0.1:4000",),
    )


ADMIN, BEA, EVE = Identity.generate(), Identity.generate(), Identity.generate()


def roster(epoch: int = 1, **kw: object) -> wire.GroupRoster:
    fields: dict[str, object] = dict(
        group_id=b"g" * 16,
        epoch=epoch,
        name="Lab",
        signer=ADMIN.ed25519_public,
        admins=(ADMIN.ed25519_public,),
        members=(member(ADMIN), member(BEA)),
        removed=(),
        signature=NO_SIGNATURE,
    )
    fields.update(kw)
    return sign_roster(ADMIN, wire.GroupRoster(**fields))  # type: ignore[arg-type]


def text(author: Identity, seq: int = 1, epoch: int = 1, body: str = "hi") -> wire.GroupMessage:
    return sign_message(
        author,
        wire.GroupMessage(b"g" * 16, author.ed25519_public, epoch, seq, seq, 0, body, NO_SIGNATURE),
    )


def test_a_signed_roster_passes_and_any_change_breaks_it() -> None:
    good = roster()
    assert check_roster_shape(good) is None
    assert check_roster_shape(dataclasses.replace(good, name="Other")) == (
        "the roster signature does not verify"
    )
    assert check_roster_shape(dataclasses.replace(good, signer=BEA.ed25519_public)) is not None


def test_roster_shape_rules() -> None:
    assert check_roster_shape(roster(admins=(EVE.ed25519_public,))) == "an admin is not a member"
    assert check_roster_shape(roster(members=(member(ADMIN), member(ADMIN)))) is not None
    removed = (wire.GroupRemoved(BEA.ed25519_public, 3),)
    assert check_roster_shape(roster(removed=removed)) == "a member is also listed as removed"
    assert check_roster_shape(roster(members=(member(ADMIN), member(BEA, joined=2)))) is not None
    forged_cert = dataclasses.replace(member(BEA), static_certificate=b"x" * 64)
    assert "certificate" in str(check_roster_shape(roster(members=(member(ADMIN), forged_cert))))


def test_concurrent_versions_have_one_winner() -> None:
    a, b = roster(2, name="North"), roster(2, name="South")
    va, vb = (2, roster_hash(a)), (2, roster_hash(b))
    assert newer(va, vb) != newer(vb, va)
    assert newer((3, b"\x00" * 32), max(va, vb))


def test_group_psk_is_the_same_on_both_sides() -> None:
    ab = group_psk(
        ADMIN.static_private, ADMIN.ed25519_public, BEA.static_public, BEA.ed25519_public
    )
    ba = group_psk(
        BEA.static_private, BEA.ed25519_public, ADMIN.static_public, ADMIN.ed25519_public
    )
    assert ab == ba and len(ab) == 32
    other = group_psk(EVE.static_private, EVE.ed25519_public, BEA.static_public, BEA.ed25519_public)
    assert other != ab


def test_message_ids_are_stable_and_distinct() -> None:
    assert message_id(b"g" * 16, b"a" * 32, 1) == message_id(b"g" * 16, b"a" * 32, 1)
    assert message_id(b"g" * 16, b"a" * 32, 1) != message_id(b"g" * 16, b"a" * 32, 2)


@settings(max_examples=50)
@given(
    st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32), st.integers(1, 2**62)
)
def test_message_ids_are_pynacls_blake2b(group_id: bytes, author: bytes, seq: int) -> None:
    """message_id uses hashlib's BLAKE2b for speed: the same bytes as libsodium's, which
    every other member (and every earlier version) computes."""
    expected = nacl.hash.blake2b(
        group_id + author + seq.to_bytes(8, "big"),
        digest_size=16,
        person=b"chinwag-grp-mid",
        encoder=nacl.encoding.RawEncoder,
    )
    assert message_id(group_id, author, seq) == expected


def test_a_removed_member_cannot_sign_anything_after_its_removal() -> None:
    """Issue 14: `seq <= last_seq` alone let a removed member sign a new message under a
    seq it never used (one some member never received). Its removal's epoch and Lamport
    time refuse whatever it signs afterwards."""
    removal = wire.GroupRemoved(EVE.ed25519_public, 5, epoch=3, lamport=40)
    current = roster(3, removed=(removal,))
    group = Group(current, roster_hash(current), GroupState.ACTIVE, 0, 1)

    def forged(seq: int, epoch: int, lamport: int) -> wire.GroupMessage:
        m = wire.GroupMessage(
            b"g" * 16, EVE.ed25519_public, epoch, seq, lamport, 0, "forged", NO_SIGNATURE
        )
        return sign_message(EVE, m)

    assert group.check_message(forged(4, 2, 40)) is None  # before the removal: still valid
    assert "epoch" in str(group.check_message(forged(4, 3, 12)))  # an unused seq, new epoch
    assert "Lamport" in str(group.check_message(forged(4, 2, 41)))  # later than the removal
    assert "removed after" in str(group.check_message(forged(6, 2, 12)))
    # A roster signed before these fields existed still judges by seq only.
    legacy = roster(3, removed=(wire.GroupRemoved(EVE.ed25519_public, 5),))
    old = Group(legacy, roster_hash(legacy), GroupState.ACTIVE, 0, 1)
    assert old.check_message(forged(4, 3, 41)) is None


def test_members_are_looked_up_in_the_roster_the_group_holds_now() -> None:
    """Group.member keeps the members by key for its roster; a new roster (a member
    added or removed) is looked up afresh."""
    first = roster(1, members=(member(ADMIN), member(BEA)))
    group = Group(first, roster_hash(first), GroupState.ACTIVE, 0, 1)
    assert group.member(BEA.ed25519_public) == member(BEA)
    assert group.member(EVE.ed25519_public) is None
    group.roster = roster(2, members=(member(ADMIN), member(EVE, joined=2)))
    assert group.member(BEA.ed25519_public) is None
    assert group.member(EVE.ed25519_public) == member(EVE, joined=2)


def test_the_others_a_record_counts_follow_the_roster() -> None:
    """Group.others (a message's record counts them) is kept for its roster and key: a
    new roster, or another key, is walked afresh; the same roster is not walked again."""
    first = roster(1, members=(member(ADMIN), member(BEA)))
    group = Group(first, roster_hash(first), GroupState.ACTIVE, 0, 1)
    assert group.others(ADMIN.ed25519_public) == [BEA.ed25519_public]
    assert group.others(ADMIN.ed25519_public) is group.others(ADMIN.ed25519_public)
    assert group.others(BEA.ed25519_public) == [ADMIN.ed25519_public]
    group.roster = roster(2, members=(member(ADMIN), member(BEA), member(EVE, joined=2)))
    assert group.others(ADMIN.ed25519_public) == [BEA.ed25519_public, EVE.ed25519_public]


def test_message_rules() -> None:
    current = roster(
        3,
        members=(member(ADMIN), member(BEA, joined=2)),
        removed=(wire.GroupRemoved(EVE.ed25519_public, 5),),
    )
    group = Group(current, roster_hash(current), GroupState.ACTIVE, 0, 1)
    assert group.check_message(text(BEA, epoch=2)) is None
    assert group.check_message(text(BEA, epoch=1)) is not None  # before bea joined
    assert group.check_message(text(BEA, epoch=4)) is not None  # a roster we do not have
    assert group.check_message(text(EVE, seq=5)) is None  # sent before eve's removal
    assert "removed" in str(group.check_message(text(EVE, seq=6)))
    outsider = Identity.generate()
    assert group.check_message(text(outsider)) == "the author is not a member"
    tampered = dataclasses.replace(text(BEA, epoch=2), body="changed")
    assert group.check_message(tampered) == "bad signature"
    assert not verify(
        MESSAGE_CONTEXT, dataclasses.replace(tampered, signature=NO_SIGNATURE), BEA.ed25519_public
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=60))
def test_marks_are_the_contiguous_prefix(seqs: list[int]) -> None:
    marks = Marks()
    for s in seqs:
        marks.add(b"a", s)
    held = set(seqs)
    expected = 0
    while expected + 1 in held:
        expected += 1
    assert marks.mark.get(b"a", 0) == expected
    assert all(marks.has(b"a", s) for s in held)
    assert marks.highest(b"a") == max(held, default=0)
    assert Marks.from_seqs({b"a": sorted(held)}).mark.get(b"a", 0) == expected


# -- group ids: GroupId (str) at the API, 16 bytes on the wire and in storage ----------------


@given(st.binary(min_size=16, max_size=16))
def test_a_group_id_round_trips_from_its_record_form(key: bytes) -> None:
    assert group_key(key.hex()) == key


@given(st.text(max_size=40) | st.text("0123456789abcdefABCDEF ", min_size=30, max_size=34))
def test_anything_but_a_group_id_is_a_group_error(text: str) -> None:
    """Any text decodes to the 16 bytes it spells in canonical form, or GroupError."""
    try:
        key = group_key(text)
    except GroupError as exc:
        assert "not a group id" in str(exc)
    else:
        assert len(key) == 16 and key.hex() == text


@pytest.mark.parametrize(
    "bad",
    ["", "ab" * 15, "ab" * 17, "AB" * 16, " " + "ab" * 16, "ab " * 16, "zz" * 16, "ab:" * 16],
)
def test_no_second_spelling_names_a_group(bad: str) -> None:
    with pytest.raises(GroupError, match="not a group id"):
        group_key(bad)


def test_a_group_id_as_bytes_is_refused_clearly() -> None:
    """A caller still passing bytes (the API before GroupId) gets a GroupError, not a crash."""
    with pytest.raises(GroupError, match="not a group id"):
        group_key(b"\x01" * 16)  # type: ignore[arg-type]
