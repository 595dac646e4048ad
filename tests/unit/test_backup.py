"""Issue 14 item 5: an encrypted backup of a whole profile, restorable elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest

from messenger import (
    BackupError,
    KdfParams,
    PeerService,
    ProfileExists,
    ServiceConfig,
    WrongPassphrase,
    backup_profile,
    restore_backup,
)
from messenger.backup import MAGIC
from messenger.cli import main as cli
from messenger.storage.repository import NewContact

OFFLINE = ServiceConfig(network=False)
FAST = KdfParams.interactive()
SECRET = "the profile passphrase"


async def make_profile(folder: Path, passphrase: str | None) -> tuple[str, str]:
    service, _ = await PeerService.create_profile(
        folder, "Ann", passphrase, kdf=FAST, config=OFFLINE
    )
    contact_id = os.urandom(16).hex()
    new = NewContact(
        contact_id, "Dana", os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
        os.urandom(32), os.urandom(16), False, ("127.0.0.1:9",),
    )  # fmt: skip
    service.repo.add_contact(new, time.time())
    fingerprint = service.fingerprint
    await service.aclose()
    return contact_id, fingerprint


async def add_history(folder: Path, passphrase: str | None, contact_id: str, source: Path) -> str:
    service = await PeerService.open(folder, passphrase, config=OFFLINE)
    try:
        for i in range(20):
            await service.chat.send_text(contact_id, f"message {i}")
        transfer = await service.files.send_file(contact_id, source)
        return transfer.id
    finally:
        await service.aclose()


@pytest.mark.parametrize("passphrase", [SECRET, None], ids=["passphrase", "keyfile"])
async def test_round_trip_into_a_new_folder(tmp_path: Path, passphrase: str | None) -> None:
    original = tmp_path / "original"
    contact_id, fingerprint = await make_profile(original, passphrase)
    picture = tmp_path / "picture.bin"
    picture.write_bytes(os.urandom(300_000))
    transfer_id = await add_history(original, passphrase, contact_id, picture)
    backup_pass = passphrase or "a separate backup passphrase"

    out = tmp_path / "ann.chinwag-backup"
    info = await asyncio.to_thread(backup_profile, original, out, backup_pass, kdf=FAST)
    assert info.attachments == 1 and out.stat().st_mode & 0o077 == 0
    raw = out.read_bytes()
    assert raw.startswith(MAGIC)
    assert b"message 1" not in raw and b"Dana" not in raw and picture.read_bytes()[:64] not in raw
    assert not list(original.glob(".backup-*"))  # the snapshot is gone

    # "Another machine": a new folder, the original moved out of reach.
    original.rename(tmp_path / "gone")
    restored = tmp_path / "elsewhere" / "profile"
    await asyncio.to_thread(restore_backup, out, restored, backup_pass, kdf=FAST)
    meta = json.loads((restored / "profile.json").read_text())
    assert meta["key_source"] == ("passphrase" if passphrase else "keyfile")
    if passphrase:
        with pytest.raises(WrongPassphrase):
            await PeerService.open(restored, "not it", config=OFFLINE)
    service = await PeerService.open(restored, passphrase, config=OFFLINE)
    try:
        assert service.fingerprint == fingerprint and service.display_name == "Ann"
        bodies = [m.body for m in await service.chat.history(contact_id)]
        assert [b for b in bodies if b.startswith("message")] == [f"message {i}" for i in range(20)]
        saved = await service.files.save_as(transfer_id, tmp_path / "saved.bin")
        assert saved.read_bytes() == picture.read_bytes()
    finally:
        await service.aclose()


async def test_wrong_passphrase_and_damage_leave_nothing(tmp_path: Path) -> None:
    original = tmp_path / "original"
    await make_profile(original, None)
    out = tmp_path / "b"
    await asyncio.to_thread(backup_profile, original, out, "right", kdf=FAST)
    target = tmp_path / "target"
    with pytest.raises(WrongPassphrase):
        await asyncio.to_thread(restore_backup, out, target, "wrong", kdf=FAST)
    assert not target.exists()

    raw = out.read_bytes()
    for damaged, said in (
        (raw[: len(raw) // 2], "cut short"),
        (raw[:-1], "cut short"),
        (raw + b"x", "after its end"),
        (raw[:-100] + bytes(b ^ 1 for b in raw[-100:-99]) + raw[-99:], "damaged"),
        (b"not a backup" * 10, "not a Chinwag backup"),
    ):
        out.write_bytes(damaged)
        with pytest.raises(BackupError, match=said):
            await asyncio.to_thread(restore_backup, out, target, "right", kdf=FAST)
        assert not target.exists()


async def test_restore_never_overwrites_a_profile(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    await make_profile(a, None)
    await make_profile(b, None)
    before = (b / "chinwag.db").read_bytes()
    out = tmp_path / "backup"
    await asyncio.to_thread(backup_profile, a, out, "pw", kdf=FAST)
    with pytest.raises(ProfileExists):
        await asyncio.to_thread(restore_backup, out, b, "pw", kdf=FAST)
    assert (b / "chinwag.db").read_bytes() == before


async def test_a_backup_while_the_service_writes_is_consistent(tmp_path: Path) -> None:
    """The snapshot is one read transaction: taken while messages are being stored, it
    holds a prefix of them and opens cleanly; the writer is not blocked meanwhile."""
    original = tmp_path / "original"
    contact_id, _ = await make_profile(original, None)
    service = await PeerService.open(original, None, config=OFFLINE)
    out = tmp_path / "backup"
    done = threading.Event()
    written = 0
    try:
        backup = asyncio.create_task(
            asyncio.to_thread(lambda: (backup_profile(original, out, "pw", kdf=FAST), done.set()))
        )
        while not done.is_set() or written < 50:
            await service.chat.send_text(contact_id, f"during {written}")
            written += 1
            await asyncio.sleep(0)
        await backup
    finally:
        await service.aclose()
    restored = tmp_path / "restored"
    await asyncio.to_thread(restore_backup, out, restored, "pw", kdf=FAST)
    service = await PeerService.open(restored, None, config=OFFLINE)
    try:
        bodies = [m.body for m in await service.chat.history(contact_id, limit=100_000)]
    finally:
        await service.aclose()
    assert bodies == [f"during {i}" for i in range(len(bodies))]  # a prefix, in order


async def test_cli_backup_and_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = tmp_path / "original"
    _, fingerprint = await make_profile(original, None)
    monkeypatch.setenv("CHINWAG_BACKUP_PASSPHRASE", "backup words")
    out = tmp_path / "ann.backup"
    argv = ["--profile", str(original), "backup", str(out)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert "backup written" in capsys.readouterr().out
    restored = tmp_path / "restored"
    argv = ["--profile", str(restored), "restore", str(out), "--json"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert json.loads(capsys.readouterr().out)["protected_by"] == "no passphrase"
    argv = ["--profile", str(restored), "whoami", "--json"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == fingerprint

    monkeypatch.setenv("CHINWAG_BACKUP_PASSPHRASE", "other words")
    argv = ["--profile", str(tmp_path / "again"), "restore", str(out)]
    assert await asyncio.to_thread(cli.main, argv) == 1
    assert "wrong passphrase for this backup" in capsys.readouterr().err


async def test_a_damaged_database_is_not_backed_up(tmp_path: Path) -> None:
    from messenger import DatabaseDamaged

    original = tmp_path / "original"
    await make_profile(original, None)
    db = original / "chinwag.db"
    os.truncate(db, db.stat().st_size // 4096 // 2 * 4096)
    out = tmp_path / "backup"
    with pytest.raises(DatabaseDamaged, match="cut short"):
        await asyncio.to_thread(backup_profile, original, out, "pw", kdf=FAST)
    assert not out.exists() and not list(tmp_path.glob(".backup*"))
