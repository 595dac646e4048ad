"""The profile folder: passphrase -> key (Argon2id), keyring / key-file fallback, the lock."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.errors
import nacl.pwhash
import pytest
from sqlalchemy import text

from messenger.profile import (
    KEYRING_SERVICE,
    KdfParams,
    KeySource,
    ProfileDir,
    ProfileError,
    ProfileExists,
    ProfileLock,
    ProfileLocked,
    ProfileMissing,
    WrongPassphrase,
    default_profile_dir,
)
from messenger.service import PeerService, ServiceConfig
from messenger.storage.database import open_database

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A tiny in-memory keyring; never chosen by keyring's own discovery."""

    priority = -1  # lower than every real backend (and the "fail" one)

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.store[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError(username) from None


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in the folder: content hash and mtime, to prove nothing was touched."""
    return {
        p.name: (_digest(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()
    }


def _make_db(profile: ProfileDir, key: bytes) -> None:
    """Create the encrypted database with one recognisable row, then close it."""
    engine = open_database(profile.db_path, key, create=True)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO settings (key, value) VALUES ('probe', :v)"), {"v": b"still here"}
        )
    engine.dispose()


def _probe(profile: ProfileDir, key: bytes) -> bytes:
    engine = open_database(profile.db_path, key)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT value FROM settings WHERE key = 'probe'")).scalar_one()
    finally:
        engine.dispose()


# -- passphrase -------------------------------------------------------------------------


def test_passphrase_profile_right_passphrase_opens(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    key, warnings = profile.prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    assert warnings == []
    assert len(key) == 32
    _make_db(profile, key)

    meta = json.loads(profile.meta_path.read_text())
    assert meta["key_source"] == "passphrase"
    assert meta["kdf"]["algorithm"] == "argon2id13"
    assert len(bytes.fromhex(meta["kdf"]["salt"])) == nacl.pwhash.argon2id.SALTBYTES
    assert profile.key_source is KeySource.PASSPHRASE
    assert profile.needs_passphrase()
    assert profile.kdf_params() == KdfParams.interactive()
    # Nothing secret in the clear: neither the key nor the passphrase.
    raw_meta = profile.meta_path.read_bytes()
    assert key.hex().encode() not in raw_meta
    assert PASSPHRASE.encode() not in raw_meta
    assert not profile.key_file.exists()

    assert profile.database_key(PASSPHRASE) == key
    assert _probe(profile, profile.database_key(PASSPHRASE)) == b"still here"


def test_same_passphrase_gives_a_different_key_per_profile(tmp_path: Path) -> None:
    a, _ = ProfileDir(tmp_path / "a").prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    b, _ = ProfileDir(tmp_path / "b").prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    assert a != b  # a fresh random salt each time


def test_default_kdf_is_moderate_and_works(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    key, _ = profile.prepare_new(PASSPHRASE)
    meta = json.loads(profile.meta_path.read_text())
    assert meta["kdf"]["opslimit"] == nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    assert meta["kdf"]["memlimit"] == nacl.pwhash.argon2id.MEMLIMIT_MODERATE
    assert profile.kdf_params() == KdfParams.moderate()
    assert "Argon2id" in KdfParams.moderate().describe()
    _make_db(profile, key)
    assert _probe(profile, profile.database_key(PASSPHRASE)) == b"still here"


def test_wrong_passphrase_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    key, _ = profile.prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    _make_db(profile, key)
    before = _snapshot(profile.path)
    assert set(before) == {"chinwag.db", "profile.json"}

    wrong_key = profile.database_key("Correct horse battery staple")
    assert wrong_key != key
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as info:
        open_database(profile.db_path, wrong_key)
    assert "decrypted" in str(info.value)
    # Also when asked to create: a wrong key never replaces the existing database.
    with pytest.raises(WrongPassphrase):
        open_database(profile.db_path, wrong_key, create=True)

    assert _snapshot(profile.path) == before  # byte for byte, not even touched; no -wal/-shm
    assert _probe(profile, profile.database_key(PASSPHRASE)) == b"still here"


def test_no_passphrase_for_a_passphrase_profile(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    profile.prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    for missing in (None, ""):
        with pytest.raises(WrongPassphrase, match="protected by a passphrase"):
            profile.database_key(missing)


def _crashed_profile(tmp_path: Path) -> tuple[ProfileDir, bytes]:
    """The image a killed process leaves: committed data still in chinwag.db-wal."""
    live = ProfileDir(tmp_path / "live")
    key, _ = live.prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    engine = open_database(live.db_path, key, create=True)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO settings (key, value) VALUES ('probe', x'01')"))
    crashed = ProfileDir(tmp_path / "crashed")
    crashed.path.mkdir()
    for name in ("chinwag.db", "chinwag.db-wal", "profile.json"):
        (crashed.path / name).write_bytes((live.path / name).read_bytes())
    engine.dispose()
    return crashed, key


def test_wrong_key_after_a_crash_keeps_the_data(tmp_path: Path) -> None:
    crashed, key = _crashed_profile(tmp_path)
    with pytest.raises(WrongPassphrase):
        open_database(crashed.db_path, crashed.database_key("not it"))
    assert crashed.database_key(PASSPHRASE) == key
    assert _probe(crashed, key) == b"\x01"


def test_wrong_key_leaves_a_crashed_wal_untouched(tmp_path: Path) -> None:
    crashed, _ = _crashed_profile(tmp_path)
    before = _snapshot(crashed.path)
    assert "chinwag.db-wal" in before

    with pytest.raises(WrongPassphrase):
        open_database(crashed.db_path, crashed.database_key("not it"))
    after = _snapshot(crashed.path)
    # A -shm index may appear; the database and its log must be exactly as they were.
    assert {name: after.get(name, ("gone", 0))[0] for name in before} == {
        name: digest for name, (digest, _) in before.items()
    }


@pytest.mark.parametrize("name", ["chat#work", "what?", "100%41"])
def test_profile_path_with_uri_characters(tmp_path: Path, name: str) -> None:
    profile = ProfileDir(tmp_path / name)
    key, _ = profile.prepare_new(PASSPHRASE, kdf=KdfParams.interactive())
    _make_db(profile, key)
    neighbours = sorted(p.name for p in tmp_path.iterdir())

    assert _probe(profile, profile.database_key(PASSPHRASE)) == b"still here"
    with pytest.raises(WrongPassphrase):
        open_database(profile.db_path, profile.database_key("wrong"))
    assert sorted(p.name for p in tmp_path.iterdir()) == neighbours  # nothing created beside


async def test_service_open_with_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "p"
    service, warnings = await PeerService.create_profile(
        path,
        "Alice",
        PASSPHRASE,
        kdf=KdfParams.interactive(),
        config=ServiceConfig(network=False),
    )
    assert warnings == []
    await service.aclose()
    profile = ProfileDir(path)
    before = _snapshot(path)

    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        await PeerService.open(path, "wrong", config=ServiceConfig(network=False))
    with pytest.raises(WrongPassphrase):
        await PeerService.open(path, None, config=ServiceConfig(network=False))
    after = _snapshot(path)
    assert {k: v for k, v in after.items() if k != "lock"} == {
        k: v for k, v in before.items() if k != "lock"
    }
    with pytest.raises(ProfileExists):
        await PeerService.create_profile(path, "Mallory", "other", kdf=KdfParams.interactive())
    # The failed attempts released the lock.
    lock = ProfileLock(profile)
    lock.acquire("test")
    lock.release()

    service = await PeerService.open(path, PASSPHRASE, config=ServiceConfig(network=False))
    try:
        assert service.display_name == "Alice"
    finally:
        await service.aclose()


# -- no passphrase ----------------------------------------------------------------------


def test_no_passphrase_no_keyring_uses_a_private_key_file(tmp_path: Path) -> None:
    # tests/conftest.py selects keyring's "fail" backend: no usable keyring.
    profile = ProfileDir(tmp_path / "p")
    key, warnings = profile.prepare_new(None)

    assert profile.key_file.exists()
    assert stat.S_IMODE(profile.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(profile.path.stat().st_mode) == 0o700
    assert profile.key_file.read_text().strip() == key.hex()
    assert len(warnings) == 1
    assert str(profile.key_file) in warnings[0]
    assert "keyring" in warnings[0] and "passphrase" in warnings[0]
    meta = json.loads(profile.meta_path.read_text())
    assert meta["key_source"] == "keyfile"
    assert "kdf" not in meta
    assert profile.key_source is KeySource.KEY_FILE
    assert not profile.needs_passphrase()
    assert profile.kdf_params() is None

    _make_db(profile, key)
    assert profile.database_key(None) == key
    assert _probe(profile, profile.database_key(None)) == b"still here"


def test_unreadable_key_file_is_a_clear_profile_error(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    profile.prepare_new(None)
    profile.key_file.unlink()
    with pytest.raises(ProfileError, match="key file"):
        profile.database_key(None)
    profile.key_file.write_text("not hex")
    with pytest.raises(ProfileError, match="key file"):
        profile.database_key(None)


def test_no_passphrase_with_keyring(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    profile = ProfileDir(tmp_path / "p")
    key, warnings = profile.prepare_new(None)

    assert warnings == []
    assert not profile.key_file.exists()
    assert json.loads(profile.meta_path.read_text())["key_source"] == "keyring"
    assert profile.key_source is KeySource.KEYRING
    assert list(memory_keyring.store.values()) == [key.hex()]
    ((service, account),) = memory_keyring.store
    assert service == KEYRING_SERVICE
    assert str(profile.path.resolve()) in account
    assert key.hex().encode() not in profile.meta_path.read_bytes()

    _make_db(profile, key)
    assert profile.database_key(None) == key
    assert _probe(profile, profile.database_key(None)) == b"still here"


def test_keyring_profiles_do_not_share_a_key(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    a = ProfileDir(tmp_path / "a")
    b = ProfileDir(tmp_path / "b")
    key_a, _ = a.prepare_new(None)
    key_b, _ = b.prepare_new(None)
    assert key_a != key_b
    assert a.database_key(None) == key_a
    assert b.database_key(None) == key_b


def test_keyring_losing_the_key_is_a_clear_error(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    profile = ProfileDir(tmp_path / "p")
    profile.prepare_new(None)
    memory_keyring.store.clear()
    with pytest.raises(ProfileError, match="keyring no longer holds"):
        profile.database_key(None)


def test_keyring_gone_later_is_a_clear_error(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    profile = ProfileDir(tmp_path / "p")
    profile.prepare_new(None)
    keyring.set_keyring(keyring.backends.fail.Keyring())  # the fixture restores the original
    with pytest.raises(ProfileError, match="keyring") as info:
        profile.database_key(None)
    assert not isinstance(info.value, WrongPassphrase)


# -- creating twice, missing profiles ---------------------------------------------------


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None])
def test_prepare_new_on_an_existing_profile_changes_nothing(
    tmp_path: Path, passphrase: str | None
) -> None:
    profile = ProfileDir(tmp_path / "p")
    key, _ = profile.prepare_new(passphrase, kdf=KdfParams.interactive())
    _make_db(profile, key)
    before = _snapshot(profile.path)

    for again in (PASSPHRASE, None, "another one"):
        with pytest.raises(ProfileExists, match=str(profile.path)):
            ProfileDir(profile.path).prepare_new(again, kdf=KdfParams.interactive())

    assert _snapshot(profile.path) == before
    assert profile.database_key(passphrase) == key
    assert _probe(profile, key) == b"still here"


def test_prepare_new_refuses_a_lone_database(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    profile.path.mkdir()
    profile.db_path.write_bytes(b"someone's database")
    with pytest.raises(ProfileExists):
        profile.prepare_new(None)
    assert profile.db_path.read_bytes() == b"someone's database"
    assert not profile.meta_path.exists()
    assert not profile.key_file.exists()


def test_missing_and_bad_metadata(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "nothing")
    assert not profile.exists()
    with pytest.raises(ProfileMissing, match="chinwag-cli init"):
        profile.database_key(None)
    profile.path.mkdir()
    profile.meta_path.write_text("{not json")
    with pytest.raises(ProfileError, match="unreadable"):
        profile.read_meta()
    profile.meta_path.write_text(json.dumps({"format": 99, "key_source": "keyfile"}))
    with pytest.raises(ProfileError, match="unsupported profile format"):
        profile.read_meta()


# -- the lock ---------------------------------------------------------------------------

TRY_LOCK = """
import sys
from pathlib import Path
from messenger.profile import ProfileDir, ProfileLock, ProfileLocked
lock = ProfileLock(ProfileDir(Path(sys.argv[1])))
try:
    lock.acquire("contender")
except ProfileLocked as exc:
    print("LOCKED", exc, flush=True)
    sys.exit(3)
print("ACQUIRED", flush=True)
lock.release()
"""

HOLD_LOCK = """
import sys, time
from pathlib import Path
from messenger.profile import ProfileDir, ProfileLock
lock = ProfileLock(ProfileDir(Path(sys.argv[1])))
lock.acquire(sys.argv[2])
print("HELD", flush=True)
time.sleep(60)
"""


def _try_lock_elsewhere(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_lock_excludes_another_process_and_names_the_holder(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    lock = ProfileLock(profile)
    lock.acquire("unit-test holder")
    assert lock.held
    try:
        result = _try_lock_elsewhere(profile.path)
        assert result.returncode == 3, result.stderr
        assert result.stdout.startswith("LOCKED")
        assert f"pid {os.getpid()}" in result.stdout
        assert "unit-test holder" in result.stdout
        assert "in use by another Chinwag process" in result.stdout
    finally:
        lock.release()
    assert not lock.held

    result = _try_lock_elsewhere(profile.path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ACQUIRED"
    # And this process can take it again afterwards.
    with ProfileLock(profile) as again:
        assert again.held


def test_lock_excludes_a_second_lock_in_the_same_process(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    with ProfileLock(profile):
        with pytest.raises(ProfileLocked) as info:
            ProfileLock(profile).acquire("second")
        assert f"pid {os.getpid()}" in info.value.holder


def test_lock_dies_with_a_killed_holder(tmp_path: Path) -> None:
    profile = ProfileDir(tmp_path / "p")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(profile.path), "sleepy holder"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "HELD"
        lock = ProfileLock(profile)
        with pytest.raises(ProfileLocked) as info:
            lock.acquire("impatient")
        assert f"pid {holder.pid}" in str(info.value)
        assert "sleepy holder" in str(info.value)
        assert not lock.held

        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
        lock.acquire("after the kill")  # no stale lock survives its process
        try:
            assert f"pid {os.getpid()}" in profile.lock_path.read_text()
            assert "after the kill" in profile.lock_path.read_text()
        finally:
            lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()


# -- where profiles live ----------------------------------------------------------------


def test_default_profile_dir_honours_chinwag_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHINWAG_PROFILE", str(tmp_path / "elsewhere"))
    assert default_profile_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CHINWAG_PROFILE", "~/chat")
    assert default_profile_dir() == tmp_path / "chat"


def test_default_profile_dir_without_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHINWAG_PROFILE", raising=False)
    path = default_profile_dir()
    assert path.name == "default"
    assert "chinwag" in path.parts
    monkeypatch.setenv("CHINWAG_PROFILE", "")  # empty means unset
    assert default_profile_dir() == path
