"""What we see on the LAN, pure and bounded: contacts' sightings and the Nearby list.

`LanDirectory` is fed by `Discovery` (mdns.py) and takes values, never a socket. It is
bounded and ignores what it cannot use, so a hostile LAN (malformed, oversized or
conflicting records, floods of fake services) costs a bounded amount of memory and time
and produces no events.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import nacl.encoding
import nacl.hash

from .advert import MAX_ADDRESSES, Advert, TokenBook

MAX_ENTRIES: Final = 512  # services remembered at once (and lookups waiting at once)
MAX_PER_CONTACT: Final = 4  # services remembered per contact (a replayed token cannot add more)
MAX_NEARBY: Final = 32  # people in the Nearby list (visible strangers remembered at once)

_NEARBY_ID_PERSON: Final = b"chinwag-nearby"
_RAW: Final = nacl.encoding.RawEncoder


def nearby_id(instance: str) -> str:
    """A short id for a Nearby entry (8 hex digits of a hash of its random instance name)."""
    return nacl.hash.blake2b(
        instance.lower().encode("utf-8"), digest_size=4, person=_NEARBY_ID_PERSON, encoder=_RAW
    ).hex()


# --------------------------------------------------------------------------- the directory


@dataclass(slots=True)
class Sighting:
    """One service seen on the LAN that we may use: a contact's, or a visible stranger's."""

    instance: str  # DNS-SD instance name, lowercased
    addresses: tuple[str, ...]
    advert: Advert
    contact_id: str | None
    seen_at: float

    @property
    def nearby_id(self) -> str:
        return nearby_id(self.instance)


@dataclass(frozen=True, slots=True)
class LanChanges:
    seen: tuple[str, ...] = ()  # contacts newly seen, or seen at new addresses
    gone: tuple[str, ...] = ()  # contacts no longer seen anywhere
    nearby: bool = False  # the Nearby list changed

    def __bool__(self) -> bool:
        return bool(self.seen or self.gone or self.nearby)


@dataclass(slots=True)
class DirectoryStats:
    updates: int = 0
    ignored: int = 0  # unparseable, another version, or neither a contact nor visible
    evicted: int = 0


class LanDirectory:
    """What we currently see on the LAN, bounded. Sans-I/O: fed by `Discovery`."""

    def __init__(
        self,
        tokens: TokenBook,
        *,
        max_entries: int = MAX_ENTRIES,
        max_per_contact: int = MAX_PER_CONTACT,
        max_nearby: int = MAX_NEARBY,
    ) -> None:
        self.tokens = tokens
        self.own: set[str] = set()  # our own instance names (lowercased)
        self.max_entries = max_entries
        self.max_per_contact = max_per_contact
        self.max_nearby = max_nearby
        self.stats = DirectoryStats()
        self._entries: OrderedDict[str, Sighting] = OrderedDict()  # least recently seen first
        # Services we cannot use now (a token we do not know, no name; or the Nearby list
        # was full), remembered so a key that arrives later (pairing, rotation) finds them.
        self._unmatched: OrderedDict[str, Sighting] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def update(
        self, instance: str, addresses: Sequence[str], advert: Advert | None, now: float
    ) -> LanChanges:
        """A service appeared or changed. An unusable record replaces (removes) what we knew."""
        key = instance.lower()
        self.stats.updates += 1
        if key in self.own:
            return LanChanges()
        if advert is None or not addresses:
            self.stats.ignored += 1
            return self.remove(key)
        contact_id = self.tokens.match(advert.token, advert.salt, now)
        if contact_id is None and (
            advert.name is None
            or (key not in self._entries and self._strangers() >= self.max_nearby)
        ):
            # Not for us (yet); or the Nearby list is full and newcomers wait until someone
            # leaves (evicting the oldest would let a flood of fake services churn the list).
            self.stats.ignored += 1
            changes = self.remove(key)
            self._unmatched[key] = Sighting(key, tuple(addresses), advert, None, now)
            while len(self._unmatched) > self.max_entries:
                self._unmatched.popitem(last=False)
            return changes
        self._unmatched.pop(key, None)
        before = self._snapshot()
        old = self._entries.pop(key, None)
        self._entries[key] = Sighting(key, tuple(addresses), advert, contact_id, now)
        self._bound(key)
        seen: tuple[str, ...] = ()
        if contact_id is not None and (
            old is None or old.contact_id != contact_id or old.addresses != tuple(addresses)
        ):
            seen = (contact_id,)
        return self._changes(before, seen)

    def remove(self, instance: str) -> LanChanges:
        key = instance.lower()
        self._unmatched.pop(key, None)
        if key not in self._entries:
            return LanChanges()
        before = self._snapshot()
        del self._entries[key]
        return self._changes(before, ())

    def clear(self) -> LanChanges:
        before = self._snapshot()
        self._entries.clear()
        self._unmatched.clear()
        return self._changes(before, ())

    def rematch(self, now: float) -> LanChanges:
        """Contacts' keys changed (or a new epoch began): match every entry again."""
        before = self._snapshot()
        seen: list[str] = []
        for key, entry in list(self._entries.items()):
            contact_id = self.tokens.match(entry.advert.token, entry.advert.salt, now)
            if contact_id == entry.contact_id:
                continue
            if contact_id is None and entry.advert.name is None:
                self._unmatched[key] = self._entries.pop(key)
                continue
            entry.contact_id = contact_id
            if contact_id is not None:
                seen.append(contact_id)
        for key, entry in list(self._unmatched.items()):
            contact_id = self.tokens.match(entry.advert.token, entry.advert.salt, now)
            if contact_id is not None:
                entry.contact_id = contact_id
                self._entries[key] = self._unmatched.pop(key)
                self._bound(key)
                seen.append(contact_id)
        return self._changes(before, tuple(dict.fromkeys(seen)))

    def _strangers(self) -> int:
        return sum(1 for e in self._entries.values() if e.contact_id is None)

    def instances(self) -> list[str]:
        return [*self._entries, *self._unmatched]

    def contact_addresses(self, contact_id: str) -> list[str]:
        """Where a contact was seen, most recently seen first."""
        found: list[str] = []
        for entry in reversed(self._entries.values()):
            if entry.contact_id == contact_id:
                found += [a for a in entry.addresses if a not in found]
        return found[: 2 * MAX_ADDRESSES]

    def contacts_seen(self) -> set[str]:
        return {e.contact_id for e in self._entries.values() if e.contact_id is not None}

    def nearby(self) -> list[Sighting]:
        """Visible strangers (at most max_nearby), by name."""
        people = [e for e in self._entries.values() if e.contact_id is None and e.advert.name]
        people.sort(key=lambda e: ((e.advert.name or "").casefold(), e.instance))
        return people[: self.max_nearby]

    def find_nearby(self, nearby_id: str) -> Sighting | None:
        wanted = nearby_id.strip().lower()
        if not wanted:
            return None
        matches = [e for e in self.nearby() if e.nearby_id.startswith(wanted)]
        return matches[0] if len(matches) == 1 else None

    # -- internals

    def _snapshot(self) -> tuple[set[str], tuple[tuple[str, str | None], ...]]:
        nearby = tuple(
            (e.instance, f"{e.advert.name}\n{e.advert.open_group or ''}") for e in self.nearby()
        )
        return self.contacts_seen(), nearby

    def _changes(
        self, before: tuple[set[str], tuple[tuple[str, str | None], ...]], seen: tuple[str, ...]
    ) -> LanChanges:
        contacts_after, nearby_after = self._snapshot()
        gone = tuple(sorted(before[0] - contacts_after))
        return LanChanges(seen, gone, nearby_after != before[1])

    def _bound(self, newest: str) -> None:
        entry = self._entries[newest]
        if entry.contact_id is not None:
            # A replayed token re-announced from one address takes one slot, not all of
            # them: otherwise a replayer could push the contact's genuine record out.
            for key, other in list(self._entries.items()):
                if (
                    key != newest
                    and other.contact_id == entry.contact_id
                    and set(other.addresses) == set(entry.addresses)
                ):
                    del self._entries[key]
            same = [k for k, e in self._entries.items() if e.contact_id == entry.contact_id]
            for key in same[: max(0, len(same) - self.max_per_contact)]:
                del self._entries[key]
                self.stats.evicted += 1
        while len(self._entries) > self.max_entries:
            victim = next(
                (k for k, e in self._entries.items() if e.contact_id is None and k != newest),
                next(iter(self._entries)),
            )
            del self._entries[victim]
            self.stats.evicted += 1
