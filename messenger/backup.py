"""Encrypted backup and restore of a whole profile, as one file (docs/protocol.md §18).

A backup is a consistent snapshot of the database (SQLCipher's ``sqlcipher_export`` inside
one read transaction, so a running service goes on writing meanwhile) and the
attachment files, in a tar stream encrypted with libsodium's secretstream
(XChaCha20-Poly1305) under a key from Argon2id over the passphrase. Nothing is ever
written in clear: the snapshot is a SQLCipher file under a random key that travels inside
the encrypted stream.

Why not a home-made container: tarfile (streaming, standard) carries the files, and
secretstream is libsodium's construction for exactly this (chunked, each chunk
authenticated, reordering and truncation detected by the final tag).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash
import nacl.utils

from .errors import ProfileError, ProfileExists, WrongPassphrase
from .files.store import DIR_NAME as ATTACHMENTS_DIR
from .profile import SALT_LEN, KdfParams, KeySource, ProfileDir, derive_key

MAGIC: Final = b"CHINWAG-BACKUP\n\x00"  # 16 bytes
FORMAT: Final = 1
CHUNK: Final = 64 * 1024  # plaintext bytes per secretstream message
MAX_HEADER: Final = 4096
_ABYTES: Final = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_TAG_FINAL: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_TAG_MESSAGE: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_HEADERBYTES: Final = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_MANIFEST: Final = "manifest.json"
_SNAPSHOT: Final = "chinwag.db"


class BackupError(ProfileError):
    """A backup that cannot be made or read; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    size: int
    attachments: int
    key_source: str


# -- the encrypted stream --------------------------------------------------------------------


class _SealingWriter(io.RawIOBase):
    """A write-only file whose bytes go out as secretstream messages of CHUNK bytes."""

    def __init__(self, out: IO[bytes], key: bytes, header: bytes) -> None:
        super().__init__()
        self._out = out
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self._out.write(sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, key))
        self._ad: bytes | None = header  # the clear header is bound to the first message
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:  # keep at least one byte for the final message
            self._push(bytes(self._buffer[:CHUNK]), _TAG_MESSAGE)
            del self._buffer[:CHUNK]
        return len(data)

    def _push(self, plain: bytes, tag: int) -> None:
        sealed = sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, plain, self._ad, tag
        )
        self._ad = None
        self._out.write(struct.pack(">I", len(sealed)) + sealed)

    def finish(self) -> None:
        self._push(bytes(self._buffer), _TAG_FINAL)
        self._buffer.clear()


class _OpeningReader(io.RawIOBase):
    """A read-only file of the plaintext of a secretstream; raises BackupError on any
    tampering, reordering or truncation (no TAG_FINAL before the end)."""

    def __init__(self, src: IO[bytes], key: bytes, header: bytes) -> None:
        super().__init__()
        self._src = src
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        stream_header = src.read(_HEADERBYTES)
        if len(stream_header) != _HEADERBYTES:
            raise BackupError("the backup file is cut short")
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, stream_header, key)
        self._ad: bytes | None = header
        self._pending = b""
        self._finished = False
        self.first = True

    def readable(self) -> bool:
        return True

    def _next(self) -> None:
        size_bytes = self._src.read(4)
        if len(size_bytes) != 4:
            raise BackupError("the backup file is cut short: its end is missing")
        (size,) = struct.unpack(">I", size_bytes)
        if not _ABYTES <= size <= CHUNK + _ABYTES:
            raise BackupError("the backup file is damaged (a bad chunk length)")
        sealed = self._src.read(size)
        if len(sealed) != size:
            raise BackupError("the backup file is cut short: its end is missing")
        try:
            plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                self._state, sealed, self._ad
            )
        except nacl.exceptions.CryptoError:
            if self.first:
                raise WrongPassphrase(
                    "wrong passphrase for this backup (or the file is damaged)"
                ) from None
            raise BackupError("the backup file is damaged (a chunk fails to decrypt)") from None
        self.first = False
        self._ad = None
        self._pending = plain
        if tag == _TAG_FINAL:
            self._finished = True
            if self._src.read(1):
                raise BackupError("the backup file has bytes after its end")

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._finished:
            self._next()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _header_bytes(kdf: KdfParams, salt: bytes) -> bytes:
    header = {
        "format": FORMAT,
        "kdf": {
            "algorithm": "argon2id13",
            "salt": salt.hex(),
            "opslimit": kdf.opslimit,
            "memlimit": kdf.memlimit,
        },
        "cipher": "secretstream_xchacha20poly1305",
        "chunk": CHUNK,
    }
    return json.dumps(header, sort_keys=True).encode("utf-8")


def _read_header(src: IO[bytes]) -> tuple[bytes, KdfParams, bytes]:
    if src.read(len(MAGIC)) != MAGIC:
        raise BackupError("this is not a Chinwag backup file")
    size_bytes = src.read(4)
    if len(size_bytes) != 4:
        raise BackupError("the backup file is cut short")
    (size,) = struct.unpack(">I", size_bytes)
    if size > MAX_HEADER:
        raise BackupError("the backup file is damaged (its header is too long)")
    raw = src.read(size)
    try:
        header = json.loads(raw)
        if header["format"] != FORMAT:
            raise BackupError(f"this backup has format {header['format']}; this Chinwag reads 1")
        kdf = header["kdf"]
        params = KdfParams(int(kdf["opslimit"]), int(kdf["memlimit"]))
        salt = bytes.fromhex(kdf["salt"])
        if kdf["algorithm"] != "argon2id13" or len(salt) != SALT_LEN:
            raise ValueError("unknown key derivation")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"the backup file is damaged (its header: {exc})") from None
    return raw, params, salt


# -- backup ----------------------------------------------------------------------------------


def _snapshot(db_path: Path, key: bytes, target: Path, target_key: bytes) -> list[str]:
    """A consistent copy of the database into `target` (SQLCipher, under target_key): one
    read transaction on a connection of our own, so a writer elsewhere is not blocked
    (WAL). Returns the attachment files the snapshot knows of."""
    import sqlcipher3

    conn = sqlcipher3.connect(str(db_path), isolation_level=None)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute(f"ATTACH DATABASE ? AS snapshot KEY \"x'{target_key.hex()}'\"", (str(target),))
        conn.execute("BEGIN")  # the snapshot: every read below sees the same database
        conn.execute("SELECT sqlcipher_export('snapshot')").fetchall()
        roots = [bytes(r[0]).hex() for r in conn.execute("SELECT root FROM main.attachments")]
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE snapshot")
    except sqlcipher3.DatabaseError as exc:
        raise BackupError(f"the database could not be copied: {exc}") from None
    finally:
        conn.close()
    return roots


def create_backup(
    profile: ProfileDir,
    key: bytes,
    out: Path,
    passphrase: str,
    *,
    kdf: KdfParams | None = None,
    progress: Callable[[int], None] | None = None,
) -> BackupInfo:
    """Write an encrypted backup of the profile (opened with `key`) to `out`. Blocking;
    safe while the service runs. `out` appears only when complete (written beside it,
    then renamed)."""
    if not passphrase:
        raise BackupError("a backup needs a passphrase")
    params = kdf or profile.kdf_params() or KdfParams.moderate()
    salt = nacl.utils.random(SALT_LEN)
    header = _header_bytes(params, salt)
    backup_key = derive_key(passphrase, salt, params)
    inner_key = nacl.utils.random(32)
    snapshot = profile.path / f".backup-{nacl.utils.random(8).hex()}.db"
    partial = out.with_name(f".{out.name}.partial")
    try:
        roots = _snapshot(profile.db_path, key, snapshot, inner_key)
        attachments = [
            p
            for root in roots
            for p in (profile.path / ATTACHMENTS_DIR).glob(f"{root}.*")
            if p.suffix in (".slots", ".chunks")
        ]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "key_source": profile.key_source.value,
            "snapshot_key": inner_key.hex(),
            "attachments": [p.name for p in attachments],
        }
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + struct.pack(">I", len(header)) + header)
            sealer = _SealingWriter(fh, backup_key, header)
            with tarfile.open(fileobj=sealer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                data = json.dumps(manifest).encode("utf-8")
                info = tarfile.TarInfo(_MANIFEST)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                tar.add(snapshot, arcname=_SNAPSHOT)
                for path in attachments:
                    with contextlib.suppress(FileNotFoundError):  # cancelled meanwhile
                        tar.add(path, arcname=f"{ATTACHMENTS_DIR}/{path.name}")
                    if progress is not None:
                        progress(len(attachments))
            sealer.finish()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
    except OSError as exc:
        raise BackupError(f"the backup could not be written to {out}: {exc}") from exc
    finally:
        for leftover in (snapshot, partial, snapshot.with_name(snapshot.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return BackupInfo(out, out.stat().st_size, len(attachments), manifest["key_source"])


def backup_profile(
    profile_path: Path, out: Path, passphrase: str, *, kdf: KdfParams | None = None
) -> BackupInfo:
    """Back up the profile at `profile_path` to `out`; no need to have it open (a running
    service goes on meanwhile). A passphrase profile's backup is encrypted under its own
    passphrase (given here, and checked); a profile without one needs a backup passphrase."""
    from .storage.database import check_database

    profile = ProfileDir(profile_path)
    profile.read_meta()  # ProfileMissing with what to do
    if not profile.db_path.exists():
        raise BackupError(f"there is no database at {profile.db_path} to back up")
    needs = profile.needs_passphrase()
    key, trusted = profile.unlock_key(passphrase if needs else None)
    # WrongPassphrase or DatabaseDamaged before anything is written: a damaged database
    # is not copied over a good backup (the start-up check; a damaged page it does not
    # read makes sqlcipher_export fail below).
    check_database(profile.db_path, key, key_trusted=trusted)
    return create_backup(profile, key, out, passphrase, kdf=kdf)


# -- restore ---------------------------------------------------------------------------------


def _safe_member(name: str) -> str | None:
    """Where a tar member may go inside the profile, or None: never outside it."""
    if name in (_MANIFEST, _SNAPSHOT):
        return name
    folder, _, file = name.partition("/")
    hexpart, dot, suffix = file.partition(".")
    if (
        folder == ATTACHMENTS_DIR
        and dot
        and suffix in ("slots", "chunks")
        and len(hexpart) == 64
        and all(c in "0123456789abcdef" for c in hexpart)
    ):
        return name
    return None


def restore_backup(
    backup: Path,
    target: Path,
    passphrase: str,
    *,
    kdf: KdfParams | None = None,
) -> tuple[BackupInfo, list[str]]:
    """Restore a backup into `target`, which must not hold a profile. The restored
    profile is protected as the original was: by this passphrase (a fresh Argon2id salt),
    or, if the original had none, by a new random key in the OS keyring (or a key file).
    Returns the info and any warnings. Blocking. Everything is checked before the profile
    appears: a wrong passphrase or a damaged file leaves `target` as it was."""
    profile = ProfileDir(target)
    if profile.exists() or profile.db_path.exists() or profile.meta_path.exists():
        raise ProfileExists(f"a profile already exists at {target}; restore into a new folder")
    existed = target.exists()
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = target / f".restoring-{nacl.utils.random(8).hex()}"
    staging.mkdir(mode=0o700)
    try:
        try:
            with backup.open("rb") as src:
                header, params, salt = _read_header(src)
                reader = _OpeningReader(src, derive_key(passphrase, salt, params), header)
                manifest = _unpack(io.BufferedReader(reader, CHUNK), staging)
        except OSError as exc:
            raise BackupError(f"cannot read the backup {backup}: {exc}") from exc
        except tarfile.TarError as exc:
            raise BackupError(f"the backup file is damaged: {exc}") from None
        original = KeySource(manifest["key_source"])
        keep = passphrase if original is KeySource.PASSPHRASE else None
        try:
            key, meta, warnings = profile.new_key_material(keep, kdf=kdf)
            _rekey(staging / _SNAPSHOT, bytes.fromhex(manifest["snapshot_key"]), key)
            if (staging / ATTACHMENTS_DIR).exists():
                os.replace(staging / ATTACHMENTS_DIR, target / ATTACHMENTS_DIR)
            os.replace(staging / _SNAPSHOT, profile.db_path)
            profile.write_new_meta(meta)
        except OSError as exc:
            raise BackupError(f"cannot write the restored profile into {target}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not existed:
            shutil.rmtree(target, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    info = BackupInfo(backup, backup.stat().st_size, len(manifest["attachments"]), original.value)
    return info, warnings


def _unpack(plain: IO[bytes], staging: Path) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    with tarfile.open(fileobj=plain, mode="r|") as tar:
        for member in tar:
            name = _safe_member(member.name)
            if name is None or not member.isfile():
                raise BackupError(f"the backup holds an unexpected entry {member.name!r}")
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            if name == _MANIFEST:
                manifest = json.loads(source.read(1 << 20))
                continue
            path = staging / name
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
        # tarfile stops at the end-of-archive blocks; the stream must end right there.
        while plain.read(CHUNK):
            pass
    if manifest is None or manifest.get("format") != FORMAT or not (staging / _SNAPSHOT).exists():
        raise BackupError("the backup file is incomplete (no manifest or no database)")
    return manifest


def _rekey(db_path: Path, old: bytes, new: bytes) -> None:
    """Put the restored snapshot under the new profile's key (SQLCipher PRAGMA rekey)."""
    import sqlcipher3

    conn = sqlcipher3.connect(str(db_path), isolation_level=None)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{old.hex()}'\"")
        problems = conn.execute("PRAGMA cipher_integrity_check").fetchall()
        if problems:
            raise BackupError(f"the database in the backup is damaged: {problems[0][0]}")
        conn.execute(f"PRAGMA rekey = \"x'{new.hex()}'\"")
        conn.execute("PRAGMA journal_mode = WAL")  # as every profile database
    except sqlcipher3.DatabaseError as exc:
        raise BackupError(f"the database in the backup cannot be read: {exc}") from None
    finally:
        conn.close()
