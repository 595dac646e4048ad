"""Every error the public API raises, in one hierarchy (re-exported by `messenger`).

`ChinwagError` is the root. `ServiceError` is a request the running service cannot carry
out; the feature errors (groups, files, nearby pairing) are kinds of it, so a front end
that shows `str(exc)` for any ServiceError covers them all. `ProfileError` is a problem
with the profile folder or its key, raised before a service exists.
Every message is written for the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class ChinwagError(Exception):
    """Anything Chinwag's API refuses; the message is for the user."""


class ServiceError(ChinwagError):
    """A request the service cannot carry out; the message is for the user."""


class MessageTooLong(ServiceError):
    pass


class ContactNotFound(ServiceError):
    pass


class InviteFailed(ServiceError):
    pass


class GroupError(ServiceError):
    """A group request that cannot be carried out; the message is for the user."""


class FileError(ServiceError):
    """A file request we cannot carry out; the message is for the user."""


class PairingError(ServiceError):
    """A pairing did not happen; the message is for the user."""


class ContactKeyChanged(ServiceError):
    """A contact whose safety number changed (a new identity under a name we know): nothing
    is sent to it until the user verifies or accepts the new safety number."""

    exit_code: ClassVar[int] = 7  # chinwag-cli's exit status for it

    def __init__(self, contact_id: str, name: str | None) -> None:
        whose = f"{name}'s" if name else "This contact's"
        name = name or "them"
        super().__init__(
            f"{whose} safety number has changed: this is a new identity using the name of "
            f"a contact you already have (a re-created profile, or someone else). Nothing "
            f"was sent. Verify the new safety number with {name}, or accept it, first"
        )
        self.contact_id = contact_id


class DiskFull(ServiceError):
    """The disk holding the profile is full: SQLite answered SQLITE_FULL. Nothing was
    written; what was not stored is sent again by its sender (protocol.md 9.3)."""

    exit_code: ClassVar[int] = 6  # chinwag-cli's exit status for it

    def __init__(self, folder: Path) -> None:
        super().__init__(
            f"the disk holding {folder} is full: free some space there. Nothing was lost; "
            "Chinwag goes on by itself once there is room"
        )
        self.folder = folder


class CliError(ChinwagError):
    """A command line that cannot be carried out; the message is for the user."""


class ListenAddressError(CliError):
    """A --listen value that is not HOST, HOST:PORT, [V6]:PORT or :PORT."""


class ProfileError(ChinwagError):
    """A profile problem the user can act on; the message says what to do."""

    exit_code: ClassVar[int] = 1  # chinwag-cli's exit status for it


class WrongPassphrase(ProfileError):
    pass


class ProfileMissing(ProfileError):
    pass


class ProfileExists(ProfileError):
    pass


class ProfileLocked(ProfileError):
    def __init__(self, holder: str) -> None:
        super().__init__(f"the profile is in use by another Chinwag process ({holder})")
        self.holder = holder


# What to do with a damaged database: never write to it; keep it; start from a backup.
_DAMAGED_ADVICE = (
    "Nothing was changed. Keep this folder as it is, and restore your latest backup "
    "into a new folder: `chinwag-cli --profile NEW_FOLDER restore BACKUP_FILE`, or start "
    "Chinwag with `--profile NEW_FOLDER` and choose “Restore a backup”."
)


class DatabaseDamaged(ProfileError):
    """The database file is damaged. Chinwag neither writes to it nor rebuilds it."""

    exit_code: ClassVar[int] = 5

    def __init__(self, db_path: Path, problem: str) -> None:
        super().__init__(f"{db_path} {problem}. {_DAMAGED_ADVICE}")
        self.problem = problem


class DatabaseEmpty(DatabaseDamaged):
    """chinwag.db is zero bytes long (or holds no tables): everything in it is gone."""

    exit_code: ClassVar[int] = 3


class DatabaseTruncated(DatabaseDamaged):
    """chinwag.db is shorter than the database says it is: its end was cut off."""

    exit_code: ClassVar[int] = 4


class DatabaseCorrupt(DatabaseDamaged):
    """A page of chinwag.db fails its HMAC or its structure is broken."""

    exit_code: ClassVar[int] = 5

    def __init__(self, db_path: Path, problem: str) -> None:
        super().__init__(db_path, problem)
        self.args = (f"{self.args[0]} `chinwag-cli doctor` checks every page.",)
