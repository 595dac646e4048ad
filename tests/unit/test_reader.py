"""The raw read path of one-shot CLI commands (storage/reader.py) answers exactly what the
service answers, on a real SQLCipher profile, and leaves to the service what it cannot
answer (a migration due)."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from messenger import PeerService, ServiceConfig
from messenger.cli.api import LocalApi
from messenger.profile import ProfileDir, ProfileLock
from messenger.storage.group_repository import GroupRepository
from messenger.storage.reader import read_command, read_startup
from messenger.storage.repository import IncomingMessage
from tests.contacts import random_contact

OFFLINE = ServiceConfig(network=False)


async def _profile(path: Path) -> dict[str, Any]:
    """A profile with contacts in every state the list shows; returns the service's
    answers to whoami and contacts."""
    service, _ = await PeerService.create_profile(
        path, "Zoë", None, config=OFFLINE, rng=random.Random(1)
    )
    async with service:
        repo = service.repo
        bob = random_contact("Bob", ("10.0.0.2:4000",))
        amy, amy2 = random_contact("amy"), random_contact("Amy")
        for c in (bob, amy, amy2):
            repo.add_contact(c, 1_700_000_000.5)
        GroupRepository(repo).add_group_contact(random_contact("Member"), 1_700_000_000.0)
        repo.set_verified(bob.id)
        repo.update_presence(amy.id, ["192.168.1.5:1234"], 1_700_000_100.25, "amy")
        incoming = [IncomingMessage(os.urandom(16), i, i, 1_700_000_000_000, "hi") for i in (1, 2)]
        repo.store_incoming([(bob.id, incoming)], 1_700_000_000_000)
        repo.queue_outgoing_many([(amy2.id, "queued: Amy is offline")], 1_700_000_000_000)
        await service.set_setting("theme", "dark")
        # Groups in every state the list shows (a deleted one is not listed).
        solo = await service.groups.create_group("Solo", [])
        await service.groups.send_text(solo.id, "a note to self")
        await service.groups.send_text(solo.id, "the newest note")
        await service.groups.create_group("Empty", [])
        left = await service.groups.create_group("Left", [])
        await service.groups.leave(left.id)
        deleted = await service.groups.create_group("Deleted", [])
        await service.groups.leave(deleted.id)
        await service.groups.delete(deleted.id)
        api = LocalApi(service)
        return {
            "whoami": await api.call("whoami", {}),
            "contacts": await api.call("contacts", {}),
        }


async def test_whoami_and_contacts_read_raw_equal_the_services_answers(tmp_path: Path) -> None:
    folder = tmp_path / "zoe"
    expected = await _profile(folder)
    assert len(expected["contacts"]) == 3  # the group-only member is not listed
    by_name = {c["name"]: c for c in expected["contacts"]}
    assert [c["name"] for c in expected["contacts"]] == ["Amy", "Bob", "amy"]
    assert by_name["Bob"]["unread"] == 2 and by_name["Bob"]["verified"] is True
    assert by_name["Amy"]["queued"] == 1 and by_name["amy"]["last_seen"] == 1_700_000_100.25
    for command in ("whoami", "contacts"):
        got = read_command(ProfileDir(folder), command, None, purpose="test")
        assert got == expected[command], command


async def test_the_windows_first_paint_read_raw_equals_the_services_answers(
    tmp_path: Path,
) -> None:
    """read_startup (the window before the service is up): who I am, the settings, the
    conversation list and the group list, exactly as the service gives them once open
    (nobody online yet)."""
    folder = tmp_path / "zoe"
    await _profile(folder)
    view = read_startup(ProfileDir(folder), None)
    assert view is not None
    service = await PeerService.open(folder, None, config=OFFLINE)
    async with service:
        expected = await service.chat.conversations()
        assert (view.display_name, view.contact_id) == (service.display_name, service.contact_id)
        assert view.settings == service.settings
        groups = []
        for group in await service.groups.groups():
            newest = await service.groups.history(group.id, limit=1)
            groups.append((group, newest[0] if newest else None))
    assert view.conversations == expected  # the same rows, in the same order
    assert view.groups == groups
    listed = {group.name: (group, newest) for group, newest in view.groups}
    assert set(listed) == {"Solo", "Empty", "Left"}
    solo, newest = listed["Solo"]
    assert newest is not None and newest.body == "the newest note" and newest.outgoing
    assert newest.author_name == "Zoë" and solo.i_am_admin and solo.state == "active"
    assert listed["Empty"][1] is None
    assert listed["Left"][0].state == "left" and not listed["Left"][0].i_am_admin
    bob = next(s for s in view.conversations if s.contact.display_name == "Bob")
    assert bob.unread == 2 and bob.last_message is not None and bob.last_message.body == "hi"
    assert sum(s.queued for s in view.conversations) == 1


async def test_a_profile_that_needs_a_migration_is_left_to_the_service(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    await _profile(folder)
    service = await PeerService.open(folder, None, config=OFFLINE)
    async with service:
        with service.repo.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0007'")
    assert read_command(ProfileDir(folder), "whoami", None, purpose="test") is None
    assert read_startup(ProfileDir(folder), None) is None


def test_a_missing_profile_is_left_to_the_service(tmp_path: Path) -> None:
    assert read_command(ProfileDir(tmp_path / "none"), "contacts", None, purpose="t") is None


async def test_the_raw_read_waits_for_the_profile_lock_like_an_open(tmp_path: Path) -> None:
    from messenger.errors import ProfileLocked

    folder = tmp_path / "busy"
    await _profile(folder)
    lock = ProfileLock(ProfileDir(folder))
    lock.acquire("another command")
    try:
        told: list[str] = []
        with pytest.raises(ProfileLocked):
            read_command(
                ProfileDir(folder),
                "whoami",
                None,
                purpose="t",
                lock_wait=0.3,
                on_lock_wait=told.append,
            )
        assert told == ["pid " + str(os.getpid()) + " on " + platform.node() + ": another command"]
    finally:
        lock.release()


def test_the_raw_read_imports_neither_sqlalchemy_nor_the_service(tmp_path: Path) -> None:
    """The point of the raw path: a fresh interpreter reading a profile loads none of the
    heavy modules (issue 15)."""
    folder = tmp_path / "light"
    init = ("--profile", str(folder), "init", "--name", "L", "--no-passphrase")
    subprocess.run(
        [sys.executable, "-m", "messenger.cli", *init],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    code = (
        "import sys\n"
        "from messenger.profile import ProfileDir\n"
        "from messenger.storage.reader import read_command\n"
        f"assert read_command(ProfileDir({str(folder)!r}), 'contacts', None, purpose='t') == []\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'zeroconf', 'asyncio', 'messenger.service')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == ""
