"""The 'Input' box: which image, its layout, what it holds, the slice range and the binning.

It offers the viewer's 2-D and 3-D image layers (not the results or previews of a run) and reads the
chosen one through the CLI's read path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from napari.layers import Image
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QPushButton

from ..io import NotLineIntegralsError
from ..widget_model.form import DATA_CHOICES, auto_center_job, data_kind_text
from ..widget_model.inputs import (
    BINNINGS,
    LAYOUT_LABELS,
    LAYOUTS,
    Binning,
    InputShape,
    cpu_hint,
    input_shape,
    layer_line_integrals,
)
from ..widget_model.live import RESULT_KEY
from .form import hrow, spin

#: metadata key of the preview layers (never offered as an input)
PREVIEW_KEY = "napari_ganrec_preview"


def _unwrap(obj):
    """The object behind napari's ``PublicOnlyProxy`` (itself when not wrapped)."""
    return getattr(obj, "__wrapped__", obj)


class InputSection(QGroupBox):
    """The input box over ``viewer``'s layers. What a change means for the other boxes is the dock widget's."""

    def __init__(self, viewer, parent=None):
        super().__init__("Input", parent)
        self.viewer = viewer
        form = QFormLayout(self)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("2-D image: one sinogram (angles x detector); 3-D: a "
                                    "projection stack (angles x rows x detector) or sinograms")
        self.layout_combo = QComboBox()
        for key in LAYOUTS:
            self.layout_combo.addItem(LAYOUT_LABELS[key], key)
        self.layout_combo.setToolTip("Which axis the sample rotates about (3-D inputs)")
        self.slice_spin = spin(0, 0, 0, "First slice to reconstruct")
        self.nslices_spin = spin(1, 1, 1, "Number of slices from the first")
        self.shape_label = QLabel("no image layer")
        self.data_combo = QComboBox()
        self.data_combo.addItems(list(DATA_CHOICES))
        self.data_combo.setToolTip("What the image holds (as the command line's --data): raw counts are "
                                   "flat/dark corrected and -log'd, transmission is -log'd, line integrals "
                                   "are used as they are")
        self.kind_label = QLabel("")
        self.kind_label.setWordWrap(True)
        self.bin_combo = QComboBox()
        for b in BINNINGS:
            self.bin_combo.addItem(str(b), b)
        self.bin_combo.setToolTip("Average b x b detector pixels (and b rows) before the run: 4x faster "
                                  "per factor 2 on the CPU; the centre is scaled with it")
        self.bin_rows_check = QCheckBox("bin rows")
        self.bin_rows_check.setChecked(True)
        self.bin_rows_check.setToolTip("Also average b consecutive rows (slices) into one")
        self.hint_label = QLabel("")
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet("color: #e0a030")
        self.problem_label = QLabel("")
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #ff6060")
        self.preprocess_button = QPushButton("Open pre-processing")
        self.preprocess_button.setToolTip("The pre-processing widget: flats, darks, -log, zingers, crop")
        self.problem_label.setVisible(False)
        self.preprocess_button.setVisible(False)
        form.addRow("image", self.layer_combo)
        form.addRow("layout", self.layout_combo)
        form.addRow("data", self.data_combo)
        form.addRow("", self.kind_label)
        form.addRow("slice", hrow(self.slice_spin, "count", self.nslices_spin))
        form.addRow("", self.shape_label)
        form.addRow("binning", hrow(self.bin_combo, self.bin_rows_check))
        form.addRow("", self.hint_label)
        form.addRow(self.problem_label)
        form.addRow(self.preprocess_button)

    # ------------------------------------------------------------------ the input layer
    def image_layers(self) -> list[Image]:
        """The layers that can be inputs: 2-D or 3-D grey images that are no run's result or preview."""
        return [
            ly for ly in self.viewer.layers
            if isinstance(ly, Image) and ly.ndim in (2, 3) and not ly.rgb
            and not ly.metadata.get(RESULT_KEY) and not ly.metadata.get(PREVIEW_KEY)
        ]

    def offer_layers(self) -> bool:
        """Offer the image layers, keeping the current choice if it is still there (no signal).

        Returns whether the choice changed.
        """
        current = self.layer_combo.currentText()
        names = [ly.name for ly in self.image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        elif names:
            self.layer_combo.setCurrentIndex(0)
        self.layer_combo.blockSignals(False)
        return current != self.layer_combo.currentText()

    def follow_layers(self, on_change: Callable) -> None:
        """Call ``on_change(event)`` when the viewer's layers are added, removed or moved."""
        self._on_layers = on_change
        ev = self.viewer.layers.events
        for emitter in (ev.inserted, ev.removed, ev.moved):
            emitter.connect(on_change)

    def unfollow_layers(self) -> None:
        on_change, self._on_layers = getattr(self, "_on_layers", None), None
        if on_change is None:
            return
        ev = self.viewer.layers.events
        for emitter in (ev.inserted, ev.removed, ev.moved):
            try:
                emitter.disconnect(on_change)
            except (RuntimeError, ValueError, TypeError):
                pass

    def input_layer(self) -> Image | None:
        """The chosen input layer (or ``None``)."""
        name = self.layer_combo.currentText()
        if name and name in self.viewer.layers:
            ly = self.viewer.layers[name]
            if isinstance(ly, Image):
                return ly
        return None

    def choose(self, layer: Image | str) -> None:
        """Choose the input layer (by layer or name); ``ValueError`` if it is not offered."""
        name = layer if isinstance(layer, str) else layer.name
        idx = self.layer_combo.findText(name)
        if idx < 0:
            raise ValueError(f"no 2-D or 3-D image layer named {name!r}")
        self.layer_combo.setCurrentIndex(idx)

    def input_info(self) -> tuple[Image | None, InputShape | None]:
        """The input layer and what it holds in the chosen layout (``(None, None)`` without one)."""
        layer = self.input_layer()
        if layer is None:
            return None, None
        return layer, input_shape(layer.data.shape, self.layout_key())

    def line_integrals(self, layer: Image, info: InputShape, start: int, stop: int, angles: np.ndarray):
        """Line integrals of rows ``start:stop`` of ``layer`` through the CLI's read path, and their kind."""
        return layer_line_integrals(layer.data, layer.metadata, info.layout, angles, start, stop,
                                    self.data_choice())

    def center_job(self, angles: Callable[[], np.ndarray]):
        """``(key, compute, row)`` of the automatic centre of the input (the middle row of the slice
        range, as the CLI), or ``None`` without an input or angles (see :func:`~.form.auto_center_job`)."""
        layer, info = self.input_info()
        if layer is None:
            return None
        try:
            a = angles()
        except ValueError:
            return None
        start, stop = self.slice_range()
        # napari's PublicOnlyProxy makes a new wrapper at each access: identify what is behind it
        return auto_center_job(layer.data, layer.metadata, layout=info.layout, angles=a,
                               row=(start + stop) // 2, choice=self.data_choice(),
                               identity=(id(_unwrap(layer)), id(_unwrap(layer.data))))

    def check(self, angles: Callable[[], np.ndarray]) -> None:
        """Tell what the input is taken for (and why), or why it cannot be made into line integrals."""
        layer, info = self.input_info()
        self.show_problem("")
        self.kind_label.setText("")
        if layer is None:
            return
        try:
            start, _ = self.slice_range()
            _, kind = self.line_integrals(layer, info, start, start + 1, angles())
        except NotLineIntegralsError as exc:
            self.show_problem(f"Cannot reconstruct {layer.name!r}: {exc}")
            return
        except ValueError as exc:  # no angles yet, ...: said when the user runs
            self.kind_label.setText(str(exc))
            return
        self.kind_label.setText(data_kind_text(kind.kind, kind.reason, kind.assumed))

    def update_hint(self, device: str) -> None:
        """Hint at binning when a wide slice is about to run on the CPU."""
        _, info = self.input_info()
        if info is None:
            self.hint_label.setText("")
            return
        b = self.binning()
        self.hint_label.setText(cpu_hint(b.n_det(info.n_det), device, b.factor))

    # ------------------------------------------------------------------ the other choices

    def layout_key(self) -> str:
        return self.layout_combo.currentData()

    def data_choice(self) -> str:
        """What the input holds, as the CLI's ``--data`` (``"auto"``, ``"raw"``, ...)."""
        return DATA_CHOICES[self.data_combo.currentText()]

    def binning(self) -> Binning:
        """The binning the next run applies."""
        return Binning(int(self.bin_combo.currentData()), self.bin_rows_check.isChecked())

    def set_binning(self, factor: int, rows: bool | None = None) -> None:
        """Choose the binning (1, 2 or 4) and whether rows are binned too."""
        idx = self.bin_combo.findData(int(factor))
        if idx < 0:
            raise ValueError(f"binning must be one of {BINNINGS}, got {factor!r}")
        if rows is not None:
            self.bin_rows_check.setChecked(bool(rows))
        self.bin_combo.setCurrentIndex(idx)

    def slice_range(self) -> tuple[int, int]:
        a = self.slice_spin.value()
        return a, a + self.nslices_spin.value()

    def show_shape(self, info: InputShape, ndim: int) -> None:
        """Describe the input and fit the slice boxes to it (the middle slice of a fresh stack, no signal)."""
        self.layout_combo.setEnabled(ndim == 3)
        if info.layout == "sinogram":
            self.shape_label.setText(f"sinogram: {info.n_angles} angles x {info.n_det} px")
        else:
            self.shape_label.setText(f"{info.n_angles} angles x {info.n_slices} slices x "
                                     f"{info.n_det} px")
        for w in (self.slice_spin, self.nslices_spin):
            w.blockSignals(True)
        self.slice_spin.setRange(0, info.n_slices - 1)
        if self.slice_spin.value() == 0 and info.n_slices > 1:
            self.slice_spin.setValue(info.n_slices // 2)
        self.nslices_spin.setRange(1, max(1, info.n_slices - self.slice_spin.value()))
        for w in (self.slice_spin, self.nslices_spin):
            w.blockSignals(False)

    def fit_count(self, info: InputShape) -> None:
        """Let the count reach the last slice from the first (no signal)."""
        self.nslices_spin.blockSignals(True)
        self.nslices_spin.setRange(1, max(1, info.n_slices - self.slice_spin.value()))
        self.nslices_spin.blockSignals(False)

    def show_problem(self, message: str) -> None:
        """Say why the input cannot be reconstructed, and offer pre-processing (``""`` hides both)."""
        self.problem_label.setText(message)
        self.problem_label.setVisible(bool(message))
        self.preprocess_button.setVisible(bool(message))
