"""The base every list model here shares: a flat list of records of one type, live from the
bridge's signals.

Subclasses keep their records in ``_rows``, answer roles in ``role_data`` and connect to
the bridge with ``_listen`` (``detach`` undoes every connection, so a closed model no
longer reacts to the service).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    SignalInstance,
)

from ui.bridge import Bridge

T = TypeVar("T")
Index = QModelIndex | QPersistentModelIndex


class RecordListModel(QAbstractListModel, Generic[T]):
    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._rows: list[T] = []
        self._connections: list[tuple[SignalInstance, Callable[..., None]]] = []

    # -- the bridge's signals -----------------------------------------------------------------

    def _listen(self, *pairs: tuple[SignalInstance, Callable[..., None]]) -> None:
        for signal, slot in pairs:
            signal.connect(slot)
            self._connections.append((signal, slot))

    def detach(self) -> None:
        """Stop listening to the bridge (the model then shows what it last knew)."""
        connections, self._connections = self._connections, []
        for signal, slot in connections:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass  # the bridge is already gone

    # -- Qt model API ---------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = index.row()
        if not index.isValid() or not 0 <= row < len(self._rows):
            return None
        return self.role_data(row, self._rows[row], role)

    def role_data(self, row: int, record: T, role: int) -> Any:
        """What `role` of the record at `row` is (None: nothing)."""
        return None

    # -- lookups and change notices -----------------------------------------------------------

    def record(self, row: int) -> T:
        return self._rows[row]

    def records(self) -> list[T]:
        return list(self._rows)

    def _changed(self, first: int, last: int | None = None) -> None:
        """Rows first..last (inclusive) look different now."""
        self.dataChanged.emit(self.index(first), self.index(first if last is None else last))

    def _changed_all(self) -> None:
        if self._rows:
            self._changed(0, len(self._rows) - 1)
