"""Issue 14 item 4: a profile is its owner's only (folder 0700, every file 0600)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from messenger import PeerService, ServiceConfig
from messenger.storage.repository import NewContact

OFFLINE = ServiceConfig(network=False)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual desktop umask (022), under which SQLite and open() make 0644 files."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(folder: Path) -> None:
    wide = {name: f"{mode:04o}" for name, mode in modes(folder).items() if mode & 0o077}
    assert not wide, f"readable by others: {wide}"


def add_contact(service: PeerService) -> str:
    contact_id = os.urandom(16).hex()
    new = NewContact(
        contact_id, "Dana", os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
        os.urandom(32), os.urandom(16), False, ("127.0.0.1:9",),
    )  # fmt: skip
    service.repo.add_contact(new, time.time())
    return contact_id


async def test_a_new_profile_in_an_open_folder_is_private(
    tmp_path: Path, loose_umask: None
) -> None:
    folder = tmp_path / "p"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    service, warnings = await PeerService.create_profile(folder, "Me", None, config=OFFLINE)
    contact_id = add_contact(service)
    await service.aclose()
    service = await PeerService.open(folder, None, config=OFFLINE)
    try:
        await service.chat.send_text(contact_id, "written while the WAL is open")
        names = set(modes(folder))
        assert {"chinwag.db", "chinwag.db-wal", "chinwag.db-shm", "profile.json", "db.key"} <= names
        assert_private(folder)
        assert any("0755" in w for w in warnings)  # the folder it was given was told about
    finally:
        await service.aclose()


async def test_every_start_narrows_what_is_too_wide_and_warns(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "p"
    service, _ = await PeerService.create_profile(folder, "Me", None, config=OFFLINE)
    contact_id = add_contact(service)
    await service.aclose()
    service = await PeerService.open(folder, None, config=OFFLINE)
    await service.chat.send_text(contact_id, "kept")
    await service.aclose()
    (folder / "attachments").mkdir(mode=0o755)
    (folder / "attachments" / "ab.slots").write_bytes(b"ciphertext")
    for path in (folder, *folder.rglob("*")):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    outside = tmp_path / "elsewhere"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (folder / "link").symlink_to(outside)

    with caplog.at_level(logging.WARNING, logger="messenger.profile"):
        service = await PeerService.open(folder, None, config=OFFLINE)
    try:
        assert [m.body for m in await service.chat.history(contact_id)] == ["kept"]
        assert_private(folder / "attachments")
        wide = {n for n, m in modes(folder).items() if m & 0o077 and n != "link"}
        assert not wide
        assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # a link is not followed
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert "chinwag.db " in warned + " " and "profile.json" in warned and "0644" in warned
    finally:
        await service.aclose()


def test_cli_init_in_an_existing_world_readable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    os.chmod(folder, 0o755)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    env.pop("CHINWAG_PASSPHRASE", None)
    result = subprocess.run(
        [sys.executable, "-m", "messenger.cli", "--profile", str(folder), "init",
         "--name", "Ann", "--no-passphrase"],
        capture_output=True, text=True, env=env, timeout=60, cwd=ROOT, umask=0o022,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "0755" in result.stderr  # warned about the folder it was given
    assert {"chinwag.db", "profile.json", "db.key"} <= set(modes(folder))
    assert_private(folder)
