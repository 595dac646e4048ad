"""Chinwag's peer service: the public API front ends use. Never imports Qt.

Front ends (ui/, and anything else outside messenger/) import from here only, never from a
module inside the package: everything they may use is re-exported below.
"""

# The service first: cli (below) and the modules it uses import PeerService from here.
from .service import ConversationSummary, PeerService, ServiceConfig

# isort: split
from .backup import BackupError, BackupInfo, backup_profile, restore_backup
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
from .files.manager import human_size
from .files.names import sanitise
from .identity import format_safety_number, safety_number_qr_payload, verify_safety_number_qr
from .net.reach import tor_missing
from .net.transport import Timing
from .profile import KdfParams, ProfileDir, default_profile_dir, restrict_umask
from .protocol.invite import (
    Invite,
    InviteError,
    InviteMalformed,
    decode_invite,
    invite_qr,
    parse_listen,
    save_invite_qr,
)
from .protocol.wire import MAX_BODY_BYTES
from .records import (
    ContactRecord,
    GroupMemberRecord,
    GroupMessageRecord,
    GroupRecord,
    MessageRecord,
    MessageState,
    TransferRecord,
    TransferState,
)

# Seeding a profile's history directly (the screenshot demo writes a conversation that
# never crossed a wire) and connection timing for ServiceConfig.
from .storage.repository import IncomingMessage

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
    "Timing",
    "TorStatusChanged",
    "TransferChanged",
    "TransferRecord",
    "TransferState",
    "TypingChanged",
    "WrongPassphrase",
    "backup_profile",
    "decode_invite",
    "default_profile_dir",
    "format_safety_number",
    "human_size",
    "invite_qr",
    "parse_listen",
    "restore_backup",
    "restrict_umask",
    "safety_number_qr_payload",
    "sanitise",
    "save_invite_qr",
    "tor_missing",
    "verify_safety_number_qr",
]
