"""The sortable pore table of the segmentation dock."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

__all__ = ["PoreTableWidget", "DISPLAY_COLUMNS"]

#: (table column, header, decimals); shown in this order
DISPLAY_COLUMNS = (
    ("label", "label", 0),
    ("volume_voxels", "volume [vox]", 0),
    ("volume", "volume", 3),
    ("equivalent_diameter", "eq. diameter", 3),
    ("sphericity", "sphericity", 3),
    ("touches_surface", "open", 0),
    ("centroid_z", "z", 1),
    ("centroid_y", "y", 1),
    ("centroid_x", "x", 1),
)


class _NumberItem(QTableWidgetItem):
    """An item that sorts by its number, not its text."""

    def __init__(self, value, decimals: int):
        text = (
            ("yes" if value else "no")
            if isinstance(value, (bool, np.bool_))
            else (f"{value:.{decimals}f}" if decimals else f"{int(value)}")
        )
        super().__init__(text)
        self.value = float(value)
        self.setFlags(Qt.ItemIsSelectable | Qt.ItemIsEnabled)
        self.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))

    def __lt__(self, other):
        if isinstance(other, _NumberItem):
            return self.value < other.value
        return super().__lt__(other)


class PoreTableWidget(QTableWidget):
    """One row per pore; columns sort on click; clicking a row emits ``pore_activated(label)``."""

    pore_activated = Signal(int)

    def __init__(self, parent=None):
        super().__init__(0, len(DISPLAY_COLUMNS), parent)
        self.setHorizontalHeaderLabels([h for _, h, _ in DISPLAY_COLUMNS])
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.setSortingEnabled(True)
        self.cellClicked.connect(self._on_clicked)

    def set_table(self, table: dict[str, np.ndarray], unit: str = "") -> None:
        """Fill from a pore table (see :func:`napari_ganrec.segment.pore_table`)."""
        headers = []
        for col, head, _ in DISPLAY_COLUMNS:
            if unit and col in ("volume", "equivalent_diameter"):
                head = f"{head} [{unit}{'³' if col == 'volume' else ''}]"
            headers.append(head)
        self.setSortingEnabled(False)
        self.clearContents()
        n = len(table["label"]) if table else 0
        self.setRowCount(n)
        self.setHorizontalHeaderLabels(headers)
        for c, (col, _, dec) in enumerate(DISPLAY_COLUMNS):
            values = table[col]
            for r in range(n):
                self.setItem(r, c, _NumberItem(values[r], dec))
        self.setSortingEnabled(True)
        self.resizeColumnsToContents()

    def label_at(self, row: int) -> int:
        """The pore label shown in ``row`` (after any sorting)."""
        return int(self.item(row, 0).value)

    def labels(self) -> list[int]:
        """Pore labels in display order."""
        return [self.label_at(r) for r in range(self.rowCount())]

    def _on_clicked(self, row: int, _col: int) -> None:
        self.pore_activated.emit(self.label_at(row))
