"""A list view as tall as its rows: the sidebar's sections (conversations, then groups)
sit one under the other, with the spare room below them, instead of the first section
taking every spare pixel and leaving a band of nothing above the groups."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QSize
from PySide6.QtWidgets import QListView, QSizePolicy, QWidget


class FittedListView(QListView):
    """Asks for the height of its rows (at most `max_rows` of them), and gives way down to
    `min_rows` when the sidebar is short; scrolls for the rest."""

    def __init__(
        self, parent: QWidget | None = None, *, min_rows: int, max_rows: int | None = None
    ) -> None:
        super().__init__(parent)
        self._min_rows = min_rows
        self._max_rows = max_rows
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def setModel(self, model: QAbstractItemModel | None) -> None:
        super().setModel(model)
        if model is not None:
            for changed in (
                model.rowsInserted,
                model.rowsRemoved,
                model.modelReset,
                model.layoutChanged,
            ):
                changed.connect(self.updateGeometry)

    def _rows(self) -> int:
        model = self.model()
        return model.rowCount() if model is not None else 0

    def _height(self, rows: int) -> int:
        if rows <= 0:
            return 0
        return rows * max(self.sizeHintForRow(0), 1) + 2 * self.frameWidth()

    def sizeHint(self) -> QSize:
        rows = self._rows()
        if self._max_rows is not None:
            rows = min(rows, self._max_rows)
        return QSize(super().sizeHint().width(), self._height(rows))

    def minimumSizeHint(self) -> QSize:
        return QSize(
            super().minimumSizeHint().width(), self._height(min(self._rows(), self._min_rows))
        )
