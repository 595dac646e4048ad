"""What `chinwag-cli run` prints as events arrive: one line per message, presence change,
pairing request, transfer step and so on (a table from event type to printer)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from ..events import (
    DiskSpace,
    FileOfferRejected,
    GroupChanged,
    GroupJoinRequested,
    GroupMessageAdded,
    MessageAdded,
    MessageStatesChanged,
    PairingEnded,
    PairingRequested,
    PresenceChanged,
    SafetyNumberChanged,
    ServiceEvent,
    TorStatusChanged,
    TransferChanged,
)
from ..records import TransferRecord, TransferState

log = logging.getLogger("chinwag.cli")


def digits(sas: str) -> str:
    """Six digits as the user compares them: "123 456"."""
    return f"{sas[:3]} {sas[3:]}"


class _Lines:
    """Lines printed during a loop pass are flushed together at its end: a burst of
    arriving messages is one write to a pipe or file, not one per line (~2 us a message
    of `chinwag-cli run`, issue 15); outside a running loop, at once. A terminal's stdout
    (line-buffered) and an unbuffered one (PYTHONUNBUFFERED) write each line at once
    anyway: for them no flush callback is scheduled (one loop callback a message)."""

    def __init__(self) -> None:
        self._flush_due = False

    def say(self, text: str) -> None:
        # One write per line: print() writes the text and the newline separately when
        # stdout writes through (PYTHONUNBUFFERED), and `run` says a line per message.
        out = sys.stdout
        out.write(text + "\n")
        if getattr(out, "write_through", False) or getattr(out, "line_buffering", False):
            return  # written already (unbuffered, or a terminal): no flush callback due
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            sys.stdout.flush()
            return
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        sys.stdout.flush()


say = _Lines().say


class RunPrinter:
    """Prints the events of a running peer; keeps the names it shows up to date."""

    def __init__(
        self, names: dict[str, str], groups: dict[str, str], transfers: list[TransferRecord]
    ) -> None:
        self.names = names  # contact id -> name
        self.groups = groups  # group id -> name
        self._reported: dict[str, TransferState] = {t.id: t.state for t in transfers}
        self._table: dict[type[Any], Callable[[Any], None]] = {
            MessageAdded: self._message,
            PresenceChanged: self._presence,
            MessageStatesChanged: self._states,
            PairingRequested: self._pairing,
            PairingEnded: self._pairing_ended,
            GroupMessageAdded: self._group_message,
            GroupChanged: self._group_changed,
            GroupJoinRequested: self._join_requested,
            DiskSpace: self._disk,
            FileOfferRejected: self._offer_rejected,
            TransferChanged: self._transfer,
            SafetyNumberChanged: self._safety_number,
            TorStatusChanged: self._tor,
        }

    def __call__(self, event: ServiceEvent) -> None:
        printer = self._table.get(type(event))
        if printer is not None:
            printer(event)
        elif hasattr(event, "contact"):  # ContactAdded, ContactChanged: the name may be new
            contact = event.contact
            self.names[contact.id] = contact.display_name

    def _name(self, contact_id: str) -> str:
        return self.names.get(contact_id) or contact_id[:8]

    def _message(self, event: MessageAdded) -> None:
        if not event.message.outgoing:
            say(f"{self._name(event.message.contact_id)}: {event.message.body}")

    def _presence(self, event: PresenceChanged) -> None:
        say(f"* {self._name(event.contact_id)} is {'online' if event.online else 'offline'}")

    def _states(self, event: MessageStatesChanged) -> None:
        log.info("%d message(s) now %s", len(event.msg_ids), event.state.name.lower())

    def _pairing(self, event: PairingRequested) -> None:
        if event.incoming:
            say(
                f"* {event.name} (nearby) asks to pair {event.pairing_id}. Check that their screen "
                f"shows {digits(event.sas)}, then: chinwag-cli pairing accept {event.pairing_id}"
                f" (or: pairing reject {event.pairing_id})"
            )

    def _pairing_ended(self, event: PairingEnded) -> None:
        say(f"* pairing {event.pairing_id}: {event.reason}")

    def _group_message(self, event: GroupMessageAdded) -> None:
        m = event.message
        if not m.outgoing:
            say(f"[{self.groups.get(m.group_id, m.group_id[:8])}] {m.author_name}: {m.body}")

    def _group_changed(self, event: GroupChanged) -> None:
        self.groups[event.group.id] = event.group.name

    def _join_requested(self, event: GroupJoinRequested) -> None:
        group = self.groups.get(event.group_id, event.group_id[:8])
        ids = f"{event.group_id[:8]} {event.contact_id[:8]}"
        say(
            f"* {event.name} asks to join {group}: chinwag-cli group approve {ids}"
            f" (or: group decline {ids})"
        )

    def _disk(self, event: DiskSpace) -> None:
        say(f"* {'disk full: ' if event.full else ''}{event.message}")

    def _offer_rejected(self, event: FileOfferRejected) -> None:
        whose = "an offer from" if event.incoming else "your offer to"
        say(f"* {whose} {self._name(event.contact_id)} ({event.name}) refused: {event.reason}")

    def _transfer(self, event: TransferChanged) -> None:
        t = event.transfer
        if t.state is self._reported.get(t.id) or t.state is TransferState.DOWNLOADING:
            return
        self._reported[t.id] = t.state
        if t.state is TransferState.COMPLETE and not t.outgoing:
            say(f"* received {t.name}: chinwag-cli file save {t.id[:12]} PATH")
        elif t.state is TransferState.OFFERED:
            say(f"* {t.name} offered: chinwag-cli file accept {t.id[:12]}")

    def _safety_number(self, event: SafetyNumberChanged) -> None:
        c = event.contact
        self.names[c.id] = c.display_name
        say(
            f"* {c.display_name} ({c.id[:8]}): a new identity using the name of a contact "
            "you have, so the safety number has changed; nothing is sent to it until you "
            f"`chinwag-cli verify {c.id[:8]}` or `chinwag-cli accept-key {c.id[:8]}`"
        )

    def _tor(self, event: TorStatusChanged) -> None:
        # Printed and flushed at once (not say()'s end of the loop pass): the bootstrap
        # may take a while, and its progress is worth seeing as it comes.
        if event.state == "starting":
            print(f"* Tor: connecting to the Tor network... {event.percent} %", flush=True)
        elif event.state == "ready":
            print(f"* Tor: reachable at {event.onion}", flush=True)
        elif event.state in ("lost", "failed"):
            print(f"* Tor {event.state}: {event.error}", flush=True)
