"""Issue 14 item 5: an empty, cut short or damaged database gets its own plain message and
exit code, and is never written to or rebuilt."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from messenger import KdfParams, PeerService, ProfileError, ServiceConfig, WrongPassphrase
from messenger.cli import main as cli
from messenger.errors import DatabaseCorrupt, DatabaseEmpty, DatabaseTruncated
from messenger.profile import ProfileDir
from messenger.storage import database
from messenger.storage.repository import IncomingMessage, NewContact

OFFLINE = ServiceConfig(network=False)
PAGE = 4096
SECRET = "a passphrase for the damage tests"


async def make_profile(folder: Path, passphrase: str | None = None, messages: int = 3000) -> str:
    kdf = KdfParams.interactive()
    service, _ = await PeerService.create_profile(folder, "Me", passphrase, kdf=kdf, config=OFFLINE)
    try:
        contact_id = os.urandom(16).hex()
        new = NewContact(
            contact_id, "Dana", os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
            os.urandom(32), os.urandom(16), False, ("127.0.0.1:9",),
        )  # fmt: skip
        service.repo.add_contact(new, time.time())
        now_ms = int(time.time() * 1000)
        rows = [
            IncomingMessage(
                os.urandom(16), i + 1, i + 1, now_ms - messages + i, f"m{i} " + "x" * 60
            )
            for i in range(messages)
        ]
        service.repo.store_incoming([(contact_id, rows)], now_ms)
    finally:
        await service.aclose()
    return contact_id


def digest(folder: Path) -> dict[str, str]:
    """The database and its WAL, by content: what 'nothing was changed' means. (A reader
    may leave SQLite's -shm index and an empty WAL behind; they hold no data.)"""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("chinwag.db*"))
        if not p.name.endswith("-shm") and (p.name == "chinwag.db" or p.stat().st_size)
    }


def truncate_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // PAGE // 2 * PAGE)


def truncate_odd(db: Path) -> None:
    os.truncate(db, PAGE + 904)


def scribble_middle(db: Path) -> None:
    pages = db.stat().st_size // PAGE
    with db.open("r+b") as fh:
        fh.seek(pages // 2 * PAGE + 1000)
        fh.write(os.urandom(64))


async def scribble_a_page_history_reads(folder: Path, contact_id: str, scratch: Path) -> None:
    """Damage one page from the middle on that reading the history meets but opening the
    profile does not. Which pages those are depends on the random ids, so each candidate
    is tried on a copy first (the middle page alone was sometimes a search-index page)."""
    import shutil

    db = folder / "chinwag.db"
    pages = db.stat().st_size // PAGE
    for page in range(pages // 2, pages):
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(folder, scratch)
        with (scratch / "chinwag.db").open("r+b") as fh:
            fh.seek(page * PAGE + 1000)
            fh.write(os.urandom(64))
        try:
            service = await PeerService.open(scratch, None, config=OFFLINE)
        except DatabaseCorrupt:
            continue  # read at open: not the case this test is about
        try:
            await service.chat.history(contact_id, limit=3000)
        except DatabaseCorrupt:
            shutil.copyfile(scratch / "chinwag.db", db)
            return
        finally:
            await service.aclose()
    raise AssertionError("no page is read by the history alone")


def scribble_first_page(db: Path) -> None:
    with db.open("r+b") as fh:
        fh.seek(100)  # past SQLCipher's 16-byte salt
        fh.write(os.urandom(64))


def empty(db: Path) -> None:
    db.write_bytes(b"")


DAMAGE: list[tuple[Callable[[Path], None], type[ProfileError], int, str]] = [
    (truncate_half, DatabaseTruncated, 4, "cut short"),
    (truncate_odd, DatabaseTruncated, 4, "cut short"),
    (scribble_middle, DatabaseCorrupt, 5, "is damaged"),
    (scribble_first_page, DatabaseCorrupt, 5, "is damaged"),
    (empty, DatabaseEmpty, 3, "is empty (0 bytes)"),
]


@pytest.mark.parametrize("case", DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
@pytest.mark.parametrize("passphrase", [None, SECRET], ids=["keyfile", "passphrase"])
async def test_damage_is_named_and_nothing_is_written(
    tmp_path: Path,
    case: tuple[Callable[[Path], None], type[ProfileError], int, str],
    passphrase: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    damage, error, code, said = case
    folder = tmp_path / "p"
    await make_profile(folder, passphrase, messages=3000)
    damage(folder / "chinwag.db")
    before = digest(folder)

    with pytest.raises(error) as caught:
        await PeerService.open(folder, passphrase, config=OFFLINE)
    assert said in str(caught.value) and "passphrase" not in str(caught.value)
    assert "restore" in str(caught.value)  # and what to do
    assert digest(folder) == before

    if passphrase is not None:
        monkeypatch.setenv("CHINWAG_PASSPHRASE", passphrase)
    assert await asyncio.to_thread(cli.main, ["--profile", str(folder), "whoami"]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert digest(folder) == before


async def test_a_wrong_passphrase_is_still_a_wrong_passphrase(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    await make_profile(folder, SECRET, messages=10)
    truncate_half(folder / "chinwag.db")
    with pytest.raises(WrongPassphrase):
        await PeerService.open(folder, "not it", config=OFFLINE)


async def test_a_profile_without_a_key_check_gets_one(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    await make_profile(folder, SECRET, messages=10)
    meta = json.loads((folder / "profile.json").read_text())
    del meta["key_check"]  # as profiles made before it
    (folder / "profile.json").write_text(json.dumps(meta))
    with pytest.raises(WrongPassphrase):
        await PeerService.open(folder, "not it", config=OFFLINE)
    service = await PeerService.open(folder, SECRET, config=OFFLINE)
    await service.aclose()
    assert "key_check" in json.loads((folder / "profile.json").read_text())


async def test_a_key_file_of_another_profile_is_said_to_be_wrong(tmp_path: Path) -> None:
    await make_profile(tmp_path / "a", messages=1)
    await make_profile(tmp_path / "b", messages=1)
    (tmp_path / "a" / "db.key").write_bytes((tmp_path / "b" / "db.key").read_bytes())
    with pytest.raises(ProfileError, match="is not the key of this profile"):
        await PeerService.open(tmp_path / "a", None, config=OFFLINE)


async def test_a_damaged_page_of_a_big_profile_is_reported_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A big database gets only the cheap check at start; a damaged page met later is a
    plain error with what to do, not a traceback."""
    folder = tmp_path / "p"
    contact_id = await make_profile(folder, messages=3000)
    monkeypatch.setattr(database, "FULL_CHECK_AT_START_MAX_BYTES", 0)  # "big"
    await scribble_a_page_history_reads(folder, contact_id, tmp_path / "scratch")
    before = digest(folder)
    service = await PeerService.open(folder, None, config=OFFLINE)
    try:
        with pytest.raises(DatabaseCorrupt, match="is damaged"):
            await service.chat.history(contact_id, limit=3000)
    finally:
        await service.aclose()
    assert (
        await asyncio.to_thread(
            cli.main, ["--profile", str(folder), "history", contact_id[:8], "--limit", "3000"]
        )
        == 5
    )
    err = capsys.readouterr().err
    assert "is damaged" in err and "doctor" in err and "Traceback" not in err
    assert digest(folder) == before

    # doctor reads every page: it finds the damage the start-up check skipped
    assert await asyncio.to_thread(cli.main, ["--profile", str(folder), "doctor"]) == 5
    assert "HMAC verification failed" in capsys.readouterr().out


async def test_doctor_on_a_sound_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    await make_profile(folder, messages=200)
    assert await asyncio.to_thread(cli.main, ["--profile", str(folder), "doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["database"] == "ok" and report["pages"] > 10


async def test_the_running_peer_reports_damage_with_its_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """While `run` holds the profile, `history` is answered over the control socket: the
    same plain message and exit status come back from there."""
    from messenger.cli.api import LocalApi
    from messenger.cli.control import ControlServer

    folder = tmp_path / "p"
    contact_id = await make_profile(folder, messages=3000)
    monkeypatch.setattr(database, "FULL_CHECK_AT_START_MAX_BYTES", 0)
    await scribble_a_page_history_reads(folder, contact_id, tmp_path / "scratch")
    service = await PeerService.open(folder, None, config=OFFLINE)
    server = ControlServer(LocalApi(service), ProfileDir(folder).control_socket)
    await server.start()
    try:
        argv = ["--profile", str(folder), "history", contact_id[:8], "--limit", "3000"]
        assert await asyncio.to_thread(cli.main, argv) == 5
        err = capsys.readouterr().err
        assert "is damaged" in err and "Traceback" not in err
    finally:
        await server.aclose()
        await service.aclose()
