"""The profile folder: where it is, how its database key is obtained, and who holds it.

A profile folder holds:

- ``chinwag.db``   the SQLCipher database (keys, contacts, messages: everything)
- ``profile.json`` clear-text metadata: format version, how the key is obtained, the
                   Argon2id salt and cost. Nothing secret.
- ``db.key``       only when there is no passphrase and no OS keyring: the raw key, 0600
- ``lock``         the lock file of the process that has the profile open
- ``control.sock`` the local control socket of a running ``chinwag-cli run`` (0600)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import nacl.encoding
import nacl.hash
import nacl.pwhash
import nacl.utils

from .errors import ProfileError, ProfileExists, ProfileLocked, ProfileMissing, WrongPassphrase

log = logging.getLogger(__name__)

PROFILE_FORMAT = 1
DB_FILE = "chinwag.db"
META_FILE = "profile.json"
KEY_FILE = "db.key"
LOCK_FILE = "lock"
LOCK_POLL_INTERVAL = 0.05  # seconds between tries while a one-shot command holds the lock
CONTROL_SOCKET = "control.sock"
KEYRING_SERVICE = "chinwag"
DB_KEY_LEN = 32
SALT_LEN = nacl.pwhash.argon2id.SALTBYTES
# Nothing in a profile is for anyone but its owner: an encrypted database and its Argon2id
# salt readable by others are all an offline guessing attack needs (docs/threat-model.md).
PRIVATE_UMASK = 0o077


def restrict_umask() -> None:
    """Files this process creates are its owner's only (0600 files, 0700 folders). The
    entry points (chinwag-cli, the window) call this first; ProfileDir.secure() still
    checks every start, since a library user or an older version may have made them."""
    os.umask(PRIVATE_UMASK)


class KeySource(StrEnum):
    PASSPHRASE = "passphrase"  # noqa: S105  (a name, not a secret)
    KEYRING = "keyring"
    KEY_FILE = "keyfile"


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost. MODERATE is the default: about a second and 256 MiB to unlock."""

    opslimit: int
    memlimit: int

    @classmethod
    def moderate(cls) -> KdfParams:
        return cls(nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)

    @classmethod
    def interactive(cls) -> KdfParams:
        return cls(
            nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
        )

    def describe(self) -> str:
        return f"Argon2id, opslimit={self.opslimit}, memlimit={self.memlimit // (1024 * 1024)} MiB"


def default_profile_dir() -> Path:
    env = os.environ.get("CHINWAG_PROFILE")
    if env:
        return Path(env).expanduser()
    import platformdirs  # here: most commands name their profile (a faster start, issue 15)

    return Path(platformdirs.user_data_dir("chinwag", appauthor=False)) / "default"


def key_check(key: bytes) -> str:
    """A value that tells a right database key from a wrong one before the database is
    read, so that a decryption failure with the right key is known to be damage, not a
    wrong passphrase. It is a keyed BLAKE2b of nothing: for a passphrase it is exactly as
    costly to guess against as the database's own first page (one Argon2id per guess)."""
    return nacl.hash.blake2b(
        b"", key=key, digest_size=16, person=b"chinwag-keycheck", encoder=nacl.encoding.HexEncoder
    ).decode("ascii")


def derive_key(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        DB_KEY_LEN,
        passphrase.encode("utf-8"),
        salt,
        opslimit=params.opslimit,
        memlimit=params.memlimit,
    )


class ProfileDir:
    """Paths and clear-text metadata of a profile folder; opening the db is storage's job."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def control_socket(self) -> Path:
        return self.path / CONTROL_SOCKET

    def exists(self) -> bool:
        return self.meta_path.exists() and self.db_path.exists()

    def secure(self) -> list[str]:
        """Narrow the folder to 0700 and everything in it to 0600 (folders 0700) where they
        are wider; returns a warning for each fix. Symbolic links are left alone (chmod
        would follow them out of the profile)."""
        fixed: list[str] = []

        def narrow(path: Path, st: os.stat_result) -> None:
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700, follow_symlinks=False)
                fixed.append(
                    f"{path} was readable by other users (mode {mode:04o}); now {mode & 0o700:04o}"
                )

        try:
            narrow(self.path, os.lstat(self.path))
            for top, dirs, files in os.walk(self.path):
                for name in (*dirs, *files):
                    path = Path(top) / name
                    with contextlib.suppress(FileNotFoundError):  # e.g. a WAL just removed
                        st = os.lstat(path)
                        if not stat.S_ISLNK(st.st_mode):
                            narrow(path, st)
        except OSError as exc:
            fixed.append(f"cannot check the permissions of {self.path}: {exc}")
        for warning in fixed:
            log.warning("%s", warning)
        return fixed

    def read_meta(self) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads(self.meta_path.read_text("utf-8"))
        except FileNotFoundError:
            raise ProfileMissing(
                f"no profile at {self.path}; create one with `chinwag-cli init --name NAME`"
            ) from None
        except (OSError, ValueError) as exc:
            raise ProfileError(f"{self.meta_path} is unreadable: {exc}") from exc
        if meta.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{self.meta_path}: unsupported profile format {meta.get('format')}")
        return meta

    @property
    def key_source(self) -> KeySource:
        return KeySource(self.read_meta()["key_source"])

    def needs_passphrase(self) -> bool:
        return self.key_source is KeySource.PASSPHRASE

    # -- creating -------------------------------------------------------------------------

    def prepare_new(
        self, passphrase: str | None, *, kdf: KdfParams | None = None
    ) -> tuple[bytes, list[str]]:
        """Decide the key of a new profile and write its metadata. Returns (key, warnings)."""
        if self.exists() or self.db_path.exists():
            raise ProfileExists(f"a profile already exists at {self.path}")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A folder that already existed keeps its mode: narrow it (and anything in it).
        warnings = self.secure()
        key, meta, more = self.new_key_material(passphrase, kdf=kdf)
        self._write_meta(meta)
        # SQLite creates the database (and later its -wal and -shm, which copy the
        # database's mode) under the process umask: create it private first.
        os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return key, warnings + more

    def new_key_material(
        self, passphrase: str | None, *, kdf: KdfParams | None = None
    ) -> tuple[bytes, dict[str, Any], list[str]]:
        """A fresh database key and the metadata that says how to get it again.

        With no passphrase the key is already stored (keyring or key file) on return.
        """
        warnings: list[str] = []
        meta: dict[str, Any] = {"format": PROFILE_FORMAT}
        if passphrase:
            params = kdf or KdfParams.moderate()
            salt = nacl.utils.random(SALT_LEN)
            key = derive_key(passphrase, salt, params)
            meta |= {
                "key_source": KeySource.PASSPHRASE.value,
                "kdf": {
                    "algorithm": "argon2id13",
                    "salt": salt.hex(),
                    "opslimit": params.opslimit,
                    "memlimit": params.memlimit,
                },
            }
        else:
            key = nacl.utils.random(DB_KEY_LEN)
            self._store_random_key(key, warnings, meta)
        meta["key_check"] = key_check(key)
        return key, meta, warnings

    def write_new_meta(self, meta: dict[str, Any]) -> None:
        """The metadata of a profile made outside prepare_new (a restored backup)."""
        self._write_meta(meta)

    def commit_key_material(self, meta: dict[str, Any]) -> None:
        """After a re-key succeeded: switch to the new key and forget the old one."""
        old = self.read_meta()
        if meta["key_source"] == KeySource.KEY_FILE.value:
            os.replace(self.path / meta["key_file"], self.path / KEY_FILE)
            meta = {**meta, "key_file": KEY_FILE}
        self._write_meta(meta)
        if (
            old["key_source"] == KeySource.KEY_FILE.value
            and meta["key_source"] != old["key_source"]
        ):
            with contextlib.suppress(FileNotFoundError):
                self.key_file.unlink()
        old_account = old.get("keyring_account")
        if old_account and old_account != meta.get("keyring_account"):
            with contextlib.suppress(Exception):
                import keyring

                keyring.delete_password(KEYRING_SERVICE, old_account)

    def _store_random_key(self, key: bytes, warnings: list[str], meta: dict[str, Any]) -> None:
        """Keep a random key in the OS keyring, else in a 0600 file. A new key never
        overwrites the one in use: it gets its own keyring entry or file until committed."""
        account = f"{self._keyring_account()}:{nacl.utils.random(4).hex()}"
        try:
            import keyring

            keyring.set_password(KEYRING_SERVICE, account, key.hex())
            if keyring.get_password(KEYRING_SERVICE, account) == key.hex():
                meta |= {"key_source": KeySource.KEYRING.value, "keyring_account": account}
                return
        except Exception as exc:  # any backend failure means: no usable keyring
            log.info("no usable OS keyring: %s", exc)
        name = KEY_FILE if not self.key_file.exists() else f"{KEY_FILE}.new"
        self._write_private(self.path / name, key.hex().encode("ascii"))
        meta |= {"key_source": KeySource.KEY_FILE.value, "key_file": name}
        warnings.append(
            f"No OS keyring is available: the database key is stored in {self.key_file} "
            "(readable only by you). Anyone who can read your files can read your messages; "
            "set a passphrase to prevent that."
        )

    def _keyring_account(self) -> str:
        return f"profile:{self.path.resolve()}"

    def _write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        self._write_private(tmp, json.dumps(meta, indent=2).encode("utf-8"))
        os.replace(tmp, self.meta_path)

    @staticmethod
    def _write_private(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(path, 0o600)

    # -- unlocking ------------------------------------------------------------------------

    def kdf_params(self) -> KdfParams | None:
        meta = self.read_meta()
        if meta["key_source"] != KeySource.PASSPHRASE.value:
            return None
        return KdfParams(int(meta["kdf"]["opslimit"]), int(meta["kdf"]["memlimit"]))

    def unlock_key(self, passphrase: str | None) -> tuple[bytes, bool]:
        """The database key and whether it is known to be right: by the key check in
        profile.json, or because no passphrase is involved (keyring and key file hold the
        key the database was made with). A wrong passphrase or key file is refused here,
        before the database is read."""
        key = self.database_key(passphrase)
        meta = self.read_meta()
        stored = meta.get("key_check")
        if stored is None:  # a profile made before the key check
            return key, meta["key_source"] != KeySource.PASSPHRASE.value
        if stored == key_check(key):
            return key, True
        if meta["key_source"] == KeySource.PASSPHRASE.value:
            raise WrongPassphrase("wrong passphrase: the profile database cannot be decrypted")
        where = (
            "the OS keyring"
            if meta["key_source"] == KeySource.KEYRING.value
            else str(self.path / meta.get("key_file", KEY_FILE))
        )
        raise ProfileError(
            f"the key in {where} is not the key of this profile's database; "
            "the profile cannot be opened with it"
        )

    def remember_key_check(self, key: bytes) -> None:
        """After the key opened the database: store its check (older profiles lack it)."""
        meta = self.read_meta()
        if "key_check" not in meta:
            self._write_meta({**meta, "key_check": key_check(key)})

    def database_key(self, passphrase: str | None) -> bytes:
        """The candidate database key. Whether it is right is known only when the db opens."""
        meta = self.read_meta()
        source = KeySource(meta["key_source"])
        if source is KeySource.PASSPHRASE:
            if not passphrase:
                raise WrongPassphrase("this profile is protected by a passphrase; none was given")
            kdf = meta["kdf"]
            params = KdfParams(int(kdf["opslimit"]), int(kdf["memlimit"]))
            return derive_key(passphrase, bytes.fromhex(kdf["salt"]), params)
        if source is KeySource.KEYRING:
            import keyring

            try:
                account = meta.get("keyring_account", self._keyring_account())
                stored = keyring.get_password(KEYRING_SERVICE, account)
            except Exception as exc:
                raise ProfileError(
                    f"the OS keyring holding this profile's key failed: {exc}"
                ) from exc
            if stored is None:
                raise ProfileError(
                    "the OS keyring no longer holds this profile's key; "
                    "the profile cannot be opened"
                )
            return bytes.fromhex(stored)
        try:
            key_path = self.path / meta.get("key_file", KEY_FILE)
            return bytes.fromhex(key_path.read_text("ascii").strip())
        except (OSError, ValueError) as exc:
            raise ProfileError(f"cannot read the profile key file {self.key_file}: {exc}") from exc


if sys.platform == "win32":  # no flock: a byte-range lock, which Windows also drops on exit
    import msvcrt

    _LOCK_OFFSET = 1 << 20  # far past the holder's description, which others must read

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


async def _sleep(seconds: float) -> None:
    import asyncio  # here: the raw read path of one-shot CLI commands never imports it

    await asyncio.sleep(seconds)


class ProfileLock:
    """An exclusive lock on the profile (flock; a byte-range lock on Windows); released
    when the process dies."""

    def __init__(self, profile: ProfileDir) -> None:
        self._profile = profile
        self._fd: int | None = None

    def acquire(self, purpose: str = "chinwag") -> None:
        path = self._profile.lock_path
        self._profile.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise ProfileLocked(holder)
        os.ftruncate(fd, 0)
        info = f"pid {os.getpid()} on {platform.node()}: {purpose}"
        # Who holds it is only shown to a second process: on a full disk the lock (flock)
        # still holds without it, and read-only commands still work.
        with contextlib.suppress(OSError):
            os.write(fd, info.encode())
        self._fd = fd

    async def acquire_waiting(
        self,
        purpose: str,
        wait: float,
        *,
        on_wait: Callable[[str], None] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> None:
        """acquire(), waiting up to `wait` seconds for a short-lived holder (a one-shot
        command) to let go. `on_wait(holder)` is called once if we have to wait; `give_up()`
        ends the wait early (with ProfileLocked), e.g. once a running peer is reachable."""
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                self.acquire(purpose)
                return
            except ProfileLocked as exc:
                if time.monotonic() >= deadline or (give_up is not None and give_up()):
                    raise
                if not told and on_wait is not None:
                    on_wait(exc.holder)
                told = True
            await _sleep(LOCK_POLL_INTERVAL)

    def acquire_waiting_sync(
        self,
        purpose: str,
        wait: float,
        *,
        on_wait: Callable[[str], None] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> None:
        """acquire_waiting without an event loop (a one-shot CLI read, storage/reader.py)."""
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                self.acquire(purpose)
                return
            except ProfileLocked as exc:
                if time.monotonic() >= deadline or (give_up is not None and give_up()):
                    raise
                if not told and on_wait is not None:
                    on_wait(exc.holder)
                told = True
            time.sleep(LOCK_POLL_INTERVAL)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ProfileLock:
        if not self.held:
            self.acquire(" ".join(sys.argv[:2]) or "chinwag")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
