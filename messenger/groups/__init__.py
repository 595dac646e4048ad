"""LAN group chat (docs/protocol.md §16), one worker built by PeerService.

The package's modules: signing.py (what is signed and how), model.py (Group, Marks, roster
rules: pure), base.py (the worker's state, helpers and records), rosters.py (membership
changes, building and applying rosters), joining.py (open groups and join requests),
sync.py (messages, acks, catch-up) and manager.py (GroupManager: lifecycle, public API,
message dispatch). What other modules import is re-exported here.
"""

from .manager import GroupManager
from .model import NO_HASH, Group, GroupState, Marks, check_roster_shape, group_key, newer
from .signing import (
    LEAVE_CONTEXT,
    MESSAGE_CONTEXT,
    NO_SIGNATURE,
    ROSTER_CONTEXT,
    group_psk,
    message_id,
    roster_hash,
    sign_leave,
    sign_message,
    sign_roster,
    signed_bytes,
    verify,
)

__all__ = [
    "LEAVE_CONTEXT",
    "MESSAGE_CONTEXT",
    "NO_HASH",
    "NO_SIGNATURE",
    "ROSTER_CONTEXT",
    "Group",
    "GroupManager",
    "GroupState",
    "Marks",
    "check_roster_shape",
    "group_key",
    "group_psk",
    "message_id",
    "newer",
    "roster_hash",
    "sign_leave",
    "sign_message",
    "sign_roster",
    "signed_bytes",
    "verify",
]
