"""Chinwag's peer service: the public API front ends use. Never imports Qt."""

from .errors import (
    ChinwagError,
    ContactNotFound,
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
    MessageAdded,
    MessageStatesChanged,
    PresenceChanged,
    ServiceEvent,
    TypingChanged,
)
from .profile import KdfParams, ProfileDir, default_profile_dir
from .records import ContactRecord, MessageRecord, MessageState
from .service import PeerService, ServiceConfig

__all__ = [
    "ChinwagError",
    "ContactAdded",
    "ContactChanged",
    "ContactNotFound",
    "ContactRecord",
    "FileError",
    "GroupError",
    "InviteFailed",
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
    "ServiceConfig",
    "ServiceError",
    "ServiceEvent",
    "TypingChanged",
    "WrongPassphrase",
    "default_profile_dir",
]
