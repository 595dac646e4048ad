"""Chinwag's peer service: the public API front ends use. Never imports Qt.

Front ends (ui/, and anything else outside messenger/) import from here only, never from a
module inside the package: everything they may use is re-exported below.
"""

from .cli import CliError, parse_listen
from .events import (
    ContactAdded,
    ContactChanged,
    FileOfferRejected,
    GroupChanged,
    GroupDeleted,
    GroupDeliveryChanged,
    GroupJoinRequested,
    GroupMessageAdded,
    MessageAdded,
    MessageStatesChanged,
    PresenceChanged,
    ServiceEvent,
    TransferChanged,
    TypingChanged,
)
from .files.manager import FileError, human_size
from .files.names import sanitise
from .groups import GroupError
from .identity import format_safety_number, safety_number_qr_payload, verify_safety_number_qr
from .invite import Invite, InviteError, InviteMalformed, decode_invite, invite_qr, save_invite_qr
from .profile import (
    KdfParams,
    ProfileDir,
    ProfileError,
    ProfileExists,
    ProfileLocked,
    ProfileMissing,
    WrongPassphrase,
    default_profile_dir,
)
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
from .service import (
    ContactNotFound,
    ConversationSummary,
    InviteFailed,
    MessageTooLong,
    PeerService,
    ServiceConfig,
    ServiceError,
)

# Seeding a profile's history directly (the screenshot demo writes a conversation that
# never crossed a wire) and connection timing for ServiceConfig.
from .storage.repository import IncomingMessage
from .transport import Timing
from .wire import MAX_BODY_BYTES

__all__ = [
    "MAX_BODY_BYTES",
    "CliError",
    "ContactAdded",
    "ContactChanged",
    "ContactNotFound",
    "ContactRecord",
    "ConversationSummary",
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
    "PeerService",
    "PresenceChanged",
    "ProfileDir",
    "ProfileError",
    "ProfileExists",
    "ProfileLocked",
    "ProfileMissing",
    "ServiceConfig",
    "ServiceError",
    "ServiceEvent",
    "Timing",
    "TransferChanged",
    "TransferRecord",
    "TransferState",
    "TypingChanged",
    "WrongPassphrase",
    "decode_invite",
    "default_profile_dir",
    "format_safety_number",
    "human_size",
    "invite_qr",
    "parse_listen",
    "safety_number_qr_payload",
    "sanitise",
    "save_invite_qr",
    "verify_safety_number_qr",
]
