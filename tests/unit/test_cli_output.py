"""What chinwag-cli prints: a part of a sent id that tells messages apart; Tor's circuits;
when `run` writes its lines."""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import pytest

from messenger.cli import main as cli
from messenger.cli.printer import RunPrinter, say
from messenger.events import MessageAdded, TorStatusChanged
from messenger.records import MessageRecord, MessageState
from messenger.storage.repository import new_msg_ids


def test_two_messages_sent_in_the_same_millisecond_print_different_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = (m.hex() for m in new_msg_ids(2, 1_700_000_000_000))
    assert first[:12] == second[:12]  # the time prefix they share
    for msg_id in (first, second):
        cli._show_send({"online": True, "contact": "Bob", "id": msg_id})
        cli._show_group({"body": "hi", "group": "Team", "id": msg_id})
    lines = capsys.readouterr().out.splitlines()
    contact_ids = [lines[0].rsplit(" ", 1)[1], lines[2].rsplit(" ", 1)[1]]
    group_ids = [lines[1].rsplit(" ", 1)[1], lines[3].rsplit(" ", 1)[1]]
    for shown in (contact_ids, group_ids):
        assert shown[0] != shown[1]
        assert first.endswith(shown[0]) and second.endswith(shown[1])


def test_tor_status_shows_the_circuits_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    status = {
        "state": "ready",
        "percent": 100,
        "summary": "Done",
        "onion": "x" * 56 + ".onion:9878",
        "error": None,
        "pid": 4242,
        "socks": "127.0.0.1:40123",
        "restarts": 0,
        "circuits": {"to contacts": 2, "from contacts": 1, "introduction": 3, "other": 0},
        "pow_defence": None,
        "streams_per_circuit": 4,
    }
    cli._show_tor(status)
    out = capsys.readouterr().out
    assert "circuits     6 built (2 to contacts, 1 from contacts, 3 introduction)" in out
    assert "defences" not in out  # no onion yet
    cli._show_tor({**status, "circuits": {}})  # tor not answering: no circuits line
    assert "circuits" not in capsys.readouterr().out
    cli._show_tor({**status, "pow_defence": True})
    assert "defences     proof-of-work on, 4 streams a circuit" in capsys.readouterr().out
    cli._show_tor({**status, "pow_defence": False})
    assert "no proof-of-work (tor < 0.4.9)" in capsys.readouterr().out


def test_every_group_action_has_a_handler() -> None:
    """`group ACTION` dispatches through two tables; each action is in exactly one."""
    from messenger.cli import group_api

    whole, one = set(group_api._WHOLE), set(group_api._ONE)
    assert not whole & one
    assert whole | one == set(group_api.GROUP_ACTIONS)


def test_a_running_peer_puts_its_start_up_objects_out_of_the_collectors_sight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`chinwag-cli run` settles the collector once started (issue 15: full collections
    walked every start-up object again, 65-200 ms with the loop stopped)."""
    import gc

    # Not a real full collection here: with one in the middle of tests/unit, test_storage's
    # `alembic check` failed later with "I/O operation on closed file" (Alembic writes to
    # the stdout it bound as a default when imported; the cause was not followed further).
    collected: list[tuple[object, ...]] = []

    def collect(*args: object) -> int:
        collected.append(args)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    before = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]  # alive now, tracked by the collector
    try:
        cli.settle_heap()
        assert collected == [()]
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.unfreeze()


class _Stream(io.StringIO):
    """stdout that counts its flushes (each is a write to the terminal or pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.flushed = ""

    def flush(self) -> None:
        self.flushes += 1
        self.flushed = self.getvalue()


async def test_messages_printed_in_one_loop_pass_are_written_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Stream()
    monkeypatch.setattr(sys, "stdout", stream)
    ana = "a" * 32
    show = RunPrinter({ana: "Ana"}, {}, [])
    for i in range(3):
        record = MessageRecord(i, bytes(16), ana, False, i, i, 0, 0, f"m{i}", MessageState.RECEIVED)
        show(MessageAdded(record))
    assert stream.flushes == 0  # a burst is not written line by line
    loop = asyncio.get_running_loop()
    passed = loop.create_future()
    loop.call_soon(passed.set_result, None)  # runs after what the printing scheduled
    await passed
    assert stream.flushes == 1
    assert stream.flushed == "Ana: m0\nAna: m1\nAna: m2\n"


class _Through(_Stream):
    """stdout as a terminal (line-buffered) or PYTHONUNBUFFERED (write-through) has it:
    each write is on its way at once, nothing is left to flush."""

    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute = attribute

    @property
    def write_through(self) -> bool:
        return self.attribute == "write_through"

    @property
    def line_buffering(self) -> bool:  # type: ignore[override]
        return self.attribute == "line_buffering"


@pytest.mark.parametrize("attribute", ["write_through", "line_buffering"])
async def test_a_stdout_that_writes_at_once_gets_no_flush_callback(
    monkeypatch: pytest.MonkeyPatch, attribute: str
) -> None:
    """No loop callback per message where a flush would do nothing (`chinwag-cli run` in
    a terminal, or under PYTHONUNBUFFERED as the benchmarks and CI run it)."""
    stream = _Through(attribute)
    monkeypatch.setattr(sys, "stdout", stream)
    loop = asyncio.get_running_loop()
    scheduled: list[object] = []
    call_soon = loop.call_soon

    def recording(callback: Any, *args: Any, **kwargs: Any) -> Any:
        scheduled.append(callback)
        return call_soon(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon", recording)
    say("[Lab] Ada: hello")
    monkeypatch.undo()
    assert scheduled == []
    assert stream.getvalue() == "[Lab] Ada: hello\n"


def test_outside_a_running_loop_a_line_is_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Stream()
    monkeypatch.setattr(sys, "stdout", stream)
    say("* hello")
    assert (stream.flushes, stream.flushed) == (1, "* hello\n")


def test_a_line_run_says_is_one_write_flushed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`chinwag-cli run` says a line for every message that arrives: one write of the
    line (print() made two, the text and the newline, when stdout writes through, as
    under PYTHONUNBUFFERED), then a flush, so a reader of the pipe sees it at once."""
    import io

    from messenger.cli.printer import say

    class Recorder(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def write(self, s: str) -> int:
            self.calls.append(s)
            return super().write(s)

        def flush(self) -> None:
            self.calls.append("<flush>")

    out = Recorder()
    monkeypatch.setattr("sys.stdout", out)
    say("[Lab] Ada: hello")
    assert out.calls == ["[Lab] Ada: hello\n", "<flush>"]


def test_run_prints_tors_progress_through_its_one_printer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`run` subscribes one printer (one call per event, not one per printer); Tor's
    progress is among what it prints, flushed at once."""
    show = RunPrinter({}, {}, [])
    show(TorStatusChanged("starting", 45, "Loading relay descriptors"))
    show(TorStatusChanged("ready", 100, "Done", "abc.onion"))
    show(TorStatusChanged("lost", 100, "", "abc.onion", "tor exited"))
    show(TorStatusChanged("failed", 100, "", None, "no consensus"))
    assert capsys.readouterr().out.splitlines() == [
        "* Tor: connecting to the Tor network... 45 %",
        "* Tor: reachable at abc.onion",
        "* Tor lost: tor exited",
        "* Tor failed: no consensus",
    ]
