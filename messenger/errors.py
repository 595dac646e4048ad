"""Every error the public API raises, in one hierarchy (re-exported by `messenger`).

`ChinwagError` is the root. `ServiceError` is a request the running service cannot carry
out; the feature errors (groups, files, nearby pairing) are kinds of it, so a front end
that shows `str(exc)` for any ServiceError covers them all. `ProfileError` is a problem
with the profile folder or its key, raised before a service exists.
Every message is written for the user.
"""

from __future__ import annotations


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


class ProfileError(ChinwagError):
    """A profile problem the user can act on; the message says what to do."""


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
