"""The 'Angles' box: where the angles come from (layer metadata, a range, a file) and the wedge they cover."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton

from ..widget_model.form import ANGLE_SOURCES, choose_angles
from .form import dspin, hrow
from .wedge_plot import WedgePlot


class AnglesSection(QGroupBox):
    """The angles box; ``changed`` is emitted whenever the angles it gives may have changed."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__("Angles (degrees)", parent)
        h = QHBoxLayout(self)
        form = QFormLayout()
        self.angle_source = QComboBox()
        self.angle_source.addItems(ANGLE_SOURCES)
        self.angle_start = dspin(-720, 720, 0.0, 1.0, 2, "First angle")
        self.angle_stop = dspin(-720, 720, 180.0, 1.0, 2, "Last angle (or end of a 180/360 "
                                "degree scan, which excludes it)")
        self.angle_count = QLabel("")
        self.angle_count.setToolTip("Number of projections: always the image's angle axis")
        self.angle_file = QLineEdit()
        self.angle_file.setPlaceholderText("text file, one angle per line")
        self.angle_browse = QPushButton("...")
        self.angle_browse.setFixedWidth(28)
        form.addRow("from", hrow(self.angle_source, self.angle_count, stretch={0: 1}))
        form.addRow("range", hrow(self.angle_start, "to", self.angle_stop))
        form.addRow("file", hrow(self.angle_file, self.angle_browse))
        h.addLayout(form, 1)
        self.wedge = WedgePlot()
        h.addWidget(self.wedge)
        self.angle_source.currentIndexChanged.connect(self.on_source)
        for w in (self.angle_start, self.angle_stop):
            w.valueChanged.connect(self.changed.emit)
        self.angle_file.editingFinished.connect(self.changed.emit)
        self.angle_browse.clicked.connect(self._browse)

    def on_source(self, *_) -> None:
        """Enable the boxes of the chosen source."""
        src = self.angle_source.currentText()
        for w in (self.angle_start, self.angle_stop):
            w.setEnabled(src == "range")
        self.angle_file.setEnabled(src == "file")
        self.angle_browse.setEnabled(src == "file")
        self.changed.emit()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Angles file (degrees)", "",
                                              "Text (*.txt *.csv *.dat *.tlt *.rawtlt);;All (*)")
        if path:
            self.angle_file.setText(path)
            self.angle_source.setCurrentText("file")
            self.changed.emit()

    def take_input(self, n_angles: int, meta_angles: np.ndarray | None) -> None:
        """A new input: its angle count, and its metadata's angles if it has them (else a range)."""
        self.angle_count.setText(f"{n_angles} angles")
        if meta_angles is not None:
            self.angle_source.setCurrentText("layer metadata")
            self.angle_start.setValue(float(meta_angles[0]))
            self.angle_stop.setValue(float(meta_angles[-1]))
        elif self.angle_source.currentText() == "layer metadata":
            self.angle_source.setCurrentText("range")

    def angles(self, layer_name: str, metadata: Mapping | None, n_angles: int) -> np.ndarray:
        """The angles (degrees) of the chosen source for an input of ``n_angles`` (``ValueError`` if none)."""
        return choose_angles(self.angle_source.currentText(), layer_name=layer_name, metadata=metadata,
                             n_angles=n_angles, file_path=self.angle_file.text(),
                             start=self.angle_start.value(), stop=self.angle_stop.value())

    def show_angles(self, angles: np.ndarray | None, problem: str = "") -> None:
        """Draw the wedge of ``angles`` (or none, with ``problem`` as its caption)."""
        if angles is None:
            self.wedge.set_angles([])
            self.wedge.label.setText(problem)
        else:
            self.wedge.set_angles(angles)
