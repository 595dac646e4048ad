"""Chinwag's peer service: the public API front ends use. Never imports Qt."""

from .events import (
    ContactAdded,
    ContactChanged,
    MessageAdded,
    MessageStatesChanged,
    PresenceChanged,
    ServiceEvent,
    TypingChanged,
)
from .profile import (
    KdfParams,
    ProfileDir,
    ProfileError,
    ProfileExists,
    ProfileLocked,
    ProfileMissing,
    WrongPassphrase,
    default_profile_dir,
    restrict_umask,
)
from .records import ContactRecord, MessageRecord, MessageState
from .service import (
    ContactNotFound,
    InviteFailed,
    MessageTooLong,
    PeerService,
    ServiceConfig,
    ServiceError,
)

__all__ = [
    "ContactAdded",
    "ContactChanged",
    "ContactNotFound",
    "ContactRecord",
    "InviteFailed",
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
    "TypingChanged",
    "WrongPassphrase",
    "default_profile_dir",
    "restrict_umask",
]
