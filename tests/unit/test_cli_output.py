"""What chinwag-cli prints for a sent message: a part of the id that tells messages apart."""

from __future__ import annotations

import pytest

from messenger.cli import main as cli
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
