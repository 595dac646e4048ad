"""Qt item models over the peer service: the conversation list and one chat's history."""

from .conversations import ConversationFilterModel, ConversationItem, ConversationListModel
from .history import HistoryModel

__all__ = [
    "ConversationFilterModel",
    "ConversationItem",
    "ConversationListModel",
    "HistoryModel",
]
