"""Chinwag's peer service: the public API front ends use. Never imports Qt.

Front ends (ui/, and anything else outside messenger/) import from here only, never from a
module inside the package: everything they may use is re-exported below.

The names are loaded on first use (PEP 562): `import messenger` costs nothing, and a
one-shot CLI command that only reads the profile never imports the service, SQLAlchemy,
zeroconf or Tor control (issue 15: `chinwag-cli whoami` spent ~0.4 s importing them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module (in this package) that defines it.
_EXPORTS: dict[str, str] = {
    "ConversationSummary": ".records",
    "PeerService": ".service",
    "ServiceConfig": ".config",
    "BackupError": ".backup",
    "BackupInfo": ".backup",
    "backup_profile": ".backup",
    "restore_backup": ".backup",
    "ChinwagError": ".errors",
    "CliError": ".errors",
    "ContactKeyChanged": ".errors",
    "ContactNotFound": ".errors",
    "DatabaseCorrupt": ".errors",
    "DatabaseDamaged": ".errors",
    "DatabaseEmpty": ".errors",
    "DatabaseTruncated": ".errors",
    "DiskFull": ".errors",
    "FileError": ".errors",
    "GroupError": ".errors",
    "InviteFailed": ".errors",
    "MessageTooLong": ".errors",
    "PairingError": ".errors",
    "ProfileError": ".errors",
    "ProfileExists": ".errors",
    "ProfileLocked": ".errors",
    "ProfileMissing": ".errors",
    "ServiceError": ".errors",
    "WrongPassphrase": ".errors",
    "ContactAdded": ".events",
    "ContactChanged": ".events",
    "DiskSpace": ".events",
    "FileOfferRejected": ".events",
    "GroupChanged": ".events",
    "GroupDeleted": ".events",
    "GroupDeliveryChanged": ".events",
    "GroupJoinRequested": ".events",
    "GroupMessageAdded": ".events",
    "MessageAdded": ".events",
    "MessageStatesChanged": ".events",
    "PresenceChanged": ".events",
    "SafetyNumberChanged": ".events",
    "ServiceEvent": ".events",
    "TorStatusChanged": ".events",
    "TransferChanged": ".events",
    "TypingChanged": ".events",
    "human_size": ".files.names",
    "sanitise": ".files.names",
    "format_safety_number": ".identity",
    "safety_number_qr_payload": ".identity",
    "verify_safety_number_qr": ".identity",
    "Invite": ".protocol.invite",
    "InviteError": ".protocol.invite",
    "InviteMalformed": ".protocol.invite",
    "decode_invite": ".protocol.invite",
    "invite_qr": ".qr",
    "parse_listen": ".protocol.invite",
    "save_invite_qr": ".qr",
    "configure_logging": ".core.logs",
    "KdfParams": ".profile",
    "ProfileDir": ".profile",
    "default_profile_dir": ".profile",
    "restrict_umask": ".profile",
    "ContactRecord": ".records",
    "GroupId": ".records",
    "GroupMemberRecord": ".records",
    "GroupMessageRecord": ".records",
    "GroupRecord": ".records",
    "MessageRecord": ".records",
    "MessageState": ".records",
    "TransferRecord": ".records",
    "TransferState": ".records",
    "IncomingMessage": ".storage.repository",
    "StartupView": ".storage.reader",
    "read_startup": ".storage.reader",
    "Timing": ".net.transport",
    "tor_missing": ".net.reach",
    "MAX_BODY_BYTES": ".protocol.wire",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .backup import (
        BackupError,
        BackupInfo,
        backup_profile,
        restore_backup,
    )
    from .config import ServiceConfig
    from .core.logs import configure_logging
    from .errors import (
        ChinwagError,
        CliError,
        ContactKeyChanged,
        ContactNotFound,
        DatabaseCorrupt,
        DatabaseDamaged,
        DatabaseEmpty,
        DatabaseTruncated,
        DiskFull,
        FileError,
        GroupError,
        InviteFailed,
        MessageTooLong,
        PairingError,
        ProfileError,
        ProfileExists,
        ProfileLocked,
        ProfileMissing,
        ServiceError,
        WrongPassphrase,
    )
    from .events import (
        ContactAdded,
        ContactChanged,
        DiskSpace,
        FileOfferRejected,
        GroupChanged,
        GroupDeleted,
        GroupDeliveryChanged,
        GroupJoinRequested,
        GroupMessageAdded,
        MessageAdded,
        MessageStatesChanged,
        PresenceChanged,
        SafetyNumberChanged,
        ServiceEvent,
        TorStatusChanged,
        TransferChanged,
        TypingChanged,
    )
    from .files.names import (
        human_size,
        sanitise,
    )
    from .identity import (
        format_safety_number,
        safety_number_qr_payload,
        verify_safety_number_qr,
    )
    from .net.reach import (
        tor_missing,
    )
    from .net.transport import (
        Timing,
    )
    from .profile import (
        KdfParams,
        ProfileDir,
        default_profile_dir,
        restrict_umask,
    )
    from .protocol.invite import (
        Invite,
        InviteError,
        InviteMalformed,
        decode_invite,
        parse_listen,
    )
    from .protocol.wire import (
        MAX_BODY_BYTES,
    )
    from .qr import (
        invite_qr,
        save_invite_qr,
    )
    from .records import (
        ContactRecord,
        ConversationSummary,
        GroupId,
        GroupMemberRecord,
        GroupMessageRecord,
        GroupRecord,
        MessageRecord,
        MessageState,
        TransferRecord,
        TransferState,
    )
    from .service import PeerService
    from .storage.reader import (
        StartupView,
        read_startup,
    )
    from .storage.repository import (
        IncomingMessage,
    )

__all__ = [
    "MAX_BODY_BYTES",
    "BackupError",
    "BackupInfo",
    "ChinwagError",
    "CliError",
    "ContactAdded",
    "ContactChanged",
    "ContactKeyChanged",
    "ContactNotFound",
    "ContactRecord",
    "ConversationSummary",
    "DatabaseCorrupt",
    "DatabaseDamaged",
    "DatabaseEmpty",
    "DatabaseTruncated",
    "DiskFull",
    "DiskSpace",
    "FileError",
    "FileOfferRejected",
    "GroupChanged",
    "GroupDeleted",
    "GroupDeliveryChanged",
    "GroupError",
    "GroupId",
    "GroupJoinRequested",
    "GroupMemberRecord",
    "GroupMessageAdded",
    "GroupMessageRecord",
    "GroupRecord",
    "IncomingMessage",
    "Invite",
    "InviteError",
    "InviteFailed",
    "InviteMalformed",
    "KdfParams",
    "MessageAdded",
    "MessageRecord",
    "MessageState",
    "MessageStatesChanged",
    "MessageTooLong",
    "PairingError",
    "PeerService",
    "PresenceChanged",
    "ProfileDir",
    "ProfileError",
    "ProfileExists",
    "ProfileLocked",
    "ProfileMissing",
    "SafetyNumberChanged",
    "ServiceConfig",
    "ServiceError",
    "ServiceEvent",
    "StartupView",
    "Timing",
    "TorStatusChanged",
    "TransferChanged",
    "TransferRecord",
    "TransferState",
    "TypingChanged",
    "WrongPassphrase",
    "backup_profile",
    "configure_logging",
    "decode_invite",
    "default_profile_dir",
    "format_safety_number",
    "human_size",
    "invite_qr",
    "parse_listen",
    "read_startup",
    "restore_backup",
    "restrict_umask",
    "safety_number_qr_payload",
    "sanitise",
    "save_invite_qr",
    "tor_missing",
    "verify_safety_number_qr",
]
