"""The sidebar's two sections: the groups sit right under the conversations (no band of
nothing between them), and when the conversations overflow they scroll while the groups
keep their rows."""

from __future__ import annotations

import os

from messenger import PeerService
from messenger.storage.repository import IncomingMessage
from tests.contacts import random_contact
from ui.views.group_list import VISIBLE_GROUPS


def _add_contacts(service: PeerService, count: int) -> None:
    for i in range(count):
        contact = random_contact(f"Contact {i}")
        service.repo.add_contact(contact, 1_700_000_000 + i)
        message = IncomingMessage(os.urandom(16), 1, 1, 1_700_000_000_000, f"hi {i}")
        service.repo.store_incoming([(contact.id, [message])], 1_700_000_000_000)


def _gap(window) -> int:
    """Pixels between the last conversation row drawn and the groups' title."""
    list_bottom = window.list.mapTo(window, window.list.rect().bottomLeft()).y()
    title_top = window.groups_title.mapTo(window, window.groups_title.rect().topLeft()).y()
    return title_top - list_bottom


def test_groups_follow_the_conversations_without_a_gap(qloop, make_peer, open_window):
    zoe = make_peer("zoe")
    _add_contacts(zoe, 2)
    qloop.run(zoe.groups.create_group("Book club", []))
    window = open_window(zoe)
    qloop.until(lambda: window.groups.rowCount() == 1, what="the group listed")
    qloop.until(lambda: window.list.height() > 0, what="the layout")
    rows = window.list.sizeHintForRow(0)
    assert window.list.height() == 2 * rows  # as tall as its two rows
    assert 0 <= _gap(window) < rows // 2  # the groups' title right under them
    group_rows = window.group_list.sizeHintForRow(0)
    assert window.group_list.height() == group_rows


def test_many_conversations_scroll_and_the_groups_keep_their_rows(qloop, make_peer, open_window):
    zoe = make_peer("zoe")
    _add_contacts(zoe, 30)
    for name in ("Book club", "Family", "Work", "Band", "Climbing"):
        qloop.run(zoe.groups.create_group(name, []))
    window = open_window(zoe)
    qloop.until(lambda: window.groups.rowCount() == 5, what="the groups listed")
    rows = window.list.sizeHintForRow(0)
    qloop.until(lambda: window.list.height() > 0, what="the layout")
    assert window.list.height() < 30 * rows  # not all of them fit: the list scrolls
    assert window.list.verticalScrollBar().maximum() > 0
    assert window.group_list.height() == VISIBLE_GROUPS * window.group_list.sizeHintForRow(0)
    assert window.group_list.verticalScrollBar().maximum() > 0  # the fifth group scrolls
