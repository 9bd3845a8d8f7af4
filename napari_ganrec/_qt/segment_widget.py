"""The 3-D pore segmentation dock widget.

It stays one module (about 500 lines) because it is one widget class whose threshold preview, run
and result handling share the same controls and layers (the GUI tests drive them as attributes
of the widget); its computation is in :mod:`napari_ganrec.segment` and its plots and pore table are
already apart (:mod:`.segment_plots`, :mod:`.segment_table`).

Pick a volume (Image layer), set the thresholds with a live preview of the current slice and a
histogram showing them, run :func:`napari_ganrec.segment.iter_segment` in a generator worker, and
get a Labels layer of pores (pore table in ``layer.features``), a Labels layer of the particle mask,
the sortable pore table (a click centres the viewer on the pore), a diameter histogram and the
porosity. The table exports to CSV and the labels to TIFF.

Widgets are touched only on the main thread; the worker gets every parameter as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import segment as sg
from .framing import frame_layer
from .segment_plots import HistogramCanvas
from .segment_table import PoreTableWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["SegmentationWidget"]

PREVIEW_NAME = "segmentation preview"
_AUTO = ("otsu", "li", "value")
_PREVIEW_VOXELS = 1 << 21  # subsample size for live threshold estimates


@dataclass
class _Estimate:
    """Thresholds and histogram of a (subsampled) volume, for the preview."""

    particle: float
    pore: float
    counts: np.ndarray
    edges: np.ndarray


class _ThresholdRow(QWidget):
    """``[otsu|li|value] [spin]``: the spin shows the automatic value or takes the user's."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.mode = QComboBox()
        self.mode.addItems(_AUTO)
        self.value = QDoubleSpinBox()
        self.value.setDecimals(4)
        self.value.setRange(-1e9, 1e9)
        self.value.setSingleStep(0.01)
        self.value.setEnabled(False)
        lay.addWidget(self.mode)
        lay.addWidget(self.value, 1)
        self.mode.currentTextChanged.connect(lambda m: self.value.setEnabled(m == "value"))

    def spec(self):
        m = self.mode.currentText()
        return float(self.value.value()) if m == "value" else m


class SegmentationWidget(QWidget):
    """Dock widget: 3-D pore segmentation of a reconstructed volume.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: sg.SegmentationResult | None = None
        self.pores_layer = None
        self.mask_layer = None
        self.estimate: _Estimate | None = None
        self._worker = None
        self._source = None  # the layer the last run used
        self._build()
        self._connect()
        self._refresh_layers()

    # ----------------------------------------------------------------------------- building
    def _build(self) -> None:
        root = QVBoxLayout(self)
        form = QFormLayout()
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("3-D Image layer (z, y, x) to segment")
        form.addRow("Volume", self.layer_combo)

        row = QHBoxLayout()
        self.denoise_combo = QComboBox()
        self.denoise_combo.addItems(("none", *sg.DENOISE_METHODS))
        self.denoise_strength = QDoubleSpinBox()
        self.denoise_strength.setRange(0.1, 50.0)
        self.denoise_strength.setValue(1.0)
        self.denoise_strength.setToolTip("Gaussian sigma / median size / NLM h over noise sigma")
        row.addWidget(self.denoise_combo)
        row.addWidget(self.denoise_strength)
        form.addRow("Denoise", row)

        self.particle_row = _ThresholdRow()
        self.particle_row.setToolTip("Solid-phase threshold of the particle mask")
        form.addRow("Particle threshold", self.particle_row)
        self.pore_row = _ThresholdRow()
        self.pore_row.setToolTip("Pores are particle voxels below this value")
        form.addRow("Pore threshold", self.pore_row)

        self.min_size = QSpinBox()
        self.min_size.setRange(0, 10**9)
        self.min_size.setValue(8)
        form.addRow("Min. pore size [vox]", self.min_size)
        self.closing = QSpinBox()
        self.closing.setRange(0, 50)
        self.closing.setToolTip("Closing radius of the particle mask (captures open pores)")
        form.addRow("Mask closing [vox]", self.closing)
        self.watershed = QCheckBox("split touching pores (watershed)")
        form.addRow("", self.watershed)
        row = QHBoxLayout()
        self.voxel_size = QDoubleSpinBox()
        self.voxel_size.setDecimals(4)
        self.voxel_size.setRange(1e-6, 1e6)
        self.voxel_size.setValue(1.0)
        self.unit = QLineEdit("px")
        self.unit.setMaximumWidth(60)
        row.addWidget(self.voxel_size, 1)
        row.addWidget(self.unit)
        form.addRow("Voxel size", row)
        root.addLayout(form)

        self.preview_check = QCheckBox("live preview on the current slice")
        self.preview_check.setChecked(True)
        self.preview_check.setToolTip(
            "Preview of the raw slice (without denoising): 1 = particle, 2 = pore"
        )
        root.addWidget(self.preview_check)
        self.value_hist = HistogramCanvas("voxel value")
        root.addWidget(self.value_hist)

        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        root.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p %")
        root.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

        box = QGroupBox("Results")
        lay = QVBoxLayout(box)
        self.porosity_label = QLabel("Porosity: -")
        self.porosity_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.porosity_label)
        self.table = PoreTableWidget()
        self.table.setMinimumHeight(160)
        lay.addWidget(self.table)
        self.diameter_hist = HistogramCanvas("equivalent diameter")
        lay.addWidget(self.diameter_hist)
        row = QHBoxLayout()
        self.export_csv_button = QPushButton("Export table (CSV)...")
        self.export_tiff_button = QPushButton("Export labels (TIFF)...")
        self.export_csv_button.setEnabled(False)
        self.export_tiff_button.setEnabled(False)
        row.addWidget(self.export_csv_button)
        row.addWidget(self.export_tiff_button)
        lay.addLayout(row)
        root.addWidget(box)

    def _connect(self) -> None:
        layers = self.viewer.layers
        layers.events.inserted.connect(self._refresh_layers)
        layers.events.removed.connect(self._refresh_layers)
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.viewer.dims.events.current_step.connect(self._update_preview)
        for row in (self.particle_row, self.pore_row):
            row.mode.currentTextChanged.connect(self._on_threshold_mode)
            row.value.valueChanged.connect(self._on_threshold_value)
        self.preview_check.toggled.connect(self._update_preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.table.pore_activated.connect(self.center_on_pore)
        self.export_csv_button.clicked.connect(self._ask_export_csv)
        self.export_tiff_button.clicked.connect(self._ask_export_labels)
        self.destroyed.connect(self._disconnect)

    def _disconnect(self, *_args) -> None:
        try:
            self.viewer.layers.events.inserted.disconnect(self._refresh_layers)
            self.viewer.layers.events.removed.disconnect(self._refresh_layers)
            self.viewer.dims.events.current_step.disconnect(self._update_preview)
        except (RuntimeError, TypeError, ValueError):  # pragma: no cover - viewer gone
            pass

    # ----------------------------------------------------------------------------- layers
    @staticmethod
    def _is_volume(layer) -> bool:
        from napari.layers import Image

        return isinstance(layer, Image) and not layer.rgb and layer.ndim == 3

    def _refresh_layers(self, *_args) -> None:
        current = self.layer_combo.currentText()
        names = [lyr.name for lyr in self.viewer.layers if self._is_volume(lyr)]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self.run_button.setEnabled(bool(names) and self._worker is None)
        if self.layer_combo.currentText() != current or self.estimate is None:
            self._on_layer_changed()

    def selected_layer(self):
        """The Image layer chosen in the combo box, or None."""
        name = self.layer_combo.currentText()
        if name and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if self._is_volume(layer):
                return layer
        return None

    @staticmethod
    def _volume_data(layer):
        return layer.data[0] if layer.multiscale else layer.data

    # --------------------------------------------------------------------- thresholds/preview
    def _on_layer_changed(self, *_args) -> None:
        self.estimate = None
        layer = self.selected_layer()
        if layer is None:
            self._remove_preview()
            return
        self.voxel_size.setValue(float(layer.scale[-1]))
        self._estimate()

    def _on_threshold_mode(self, *_args) -> None:
        self._estimate()

    def _on_threshold_value(self, *_args) -> None:
        if "value" in (self.particle_row.mode.currentText(), self.pore_row.mode.currentText()):
            self._show_thresholds()
            self._update_preview()

    def _estimate(self) -> None:
        """Automatic thresholds on a strided subsample (synchronous: it is small)."""
        layer = self.selected_layer()
        if layer is None:
            return
        data = self._volume_data(layer)
        step = max(1, int(np.ceil((np.prod(data.shape, dtype=float) / _PREVIEW_VOXELS) ** (1 / 3))))
        sub = np.asarray(data[::step, ::step, ::step], dtype=np.float32)
        try:
            p, q = sg.estimate_thresholds(
                sub, self.particle_row.spec(), self.pore_row.spec(), max_voxels=sub.size
            )
            counts, edges = sg.volume_histogram(sub, bins=256)
        except ValueError as exc:
            self.status.setText(f"Thresholds: {exc}")
            return
        self.estimate = _Estimate(p, q, counts, edges)
        for row, value in ((self.particle_row, p), (self.pore_row, q)):
            if row.mode.currentText() != "value":
                row.value.blockSignals(True)
                row.value.setValue(value)
                row.value.blockSignals(False)
        self.value_hist.set_histogram(counts, edges, log=True)
        self._show_thresholds()
        self._update_preview()

    def thresholds(self) -> tuple[float, float]:
        """The particle and pore thresholds the preview shows (spin box values)."""
        return float(self.particle_row.value.value()), float(self.pore_row.value.value())

    def _show_thresholds(self) -> None:
        p, q = self.thresholds()
        self.value_hist.set_markers({"particle": p, "pore": q})

    def _current_slice_index(self, layer) -> int:
        world = np.asarray(self.viewer.dims.point)[-layer.ndim :]
        z = layer.world_to_data(world)[0]
        return int(np.clip(np.round(z), 0, layer.data.shape[0] - 1))

    def _remove_preview(self) -> None:
        if PREVIEW_NAME in self.viewer.layers:
            self.viewer.layers.remove(PREVIEW_NAME)

    def _update_preview(self, *_args) -> None:
        layer = self.selected_layer()
        if not self.preview_check.isChecked() or layer is None or self.estimate is None:
            self._remove_preview()
            return
        data = self._volume_data(layer)
        k = self._current_slice_index(layer)
        p, q = self.thresholds()
        preview = sg.preview_slice(np.asarray(data[k]), p, q)
        if PREVIEW_NAME in self.viewer.layers:
            self.viewer.layers[PREVIEW_NAME].data = preview
        else:
            self.viewer.add_labels(
                preview,
                name=PREVIEW_NAME,
                opacity=0.4,
                scale=layer.scale[-2:],
                translate=layer.translate[-2:],
            )
        self.viewer.layers[PREVIEW_NAME].metadata["slice"] = k

    # ------------------------------------------------------------------------------- run
    def parameters(self) -> dict:
        """Keyword arguments of :func:`napari_ganrec.segment.iter_segment` from the controls."""
        denoise = self.denoise_combo.currentText()
        strength = float(self.denoise_strength.value()) if denoise != "none" else None
        vs = float(self.voxel_size.value())
        return dict(
            denoise=None if denoise == "none" else denoise,
            denoise_strength=strength,
            particle_threshold=self.particle_row.spec(),
            pore_threshold=self.pore_row.spec(),
            closing=int(self.closing.value()),
            min_size=int(self.min_size.value()),
            watershed=self.watershed.isChecked(),
            voxel_size=vs,
        )

    def run(self) -> None:
        """Start the segmentation of the selected layer in a generator worker."""
        from napari.qt.threading import GeneratorWorker

        layer = self.selected_layer()
        if layer is None or self._worker is not None:
            return
        params = self.parameters()
        self._source = layer
        self._worker = GeneratorWorker(sg.iter_segment, self._volume_data(layer), **params)
        self._worker.yielded.connect(self._on_progress)
        self._worker.returned.connect(self._on_result)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("segmenting...")
        self._worker.start()

    def cancel(self) -> None:
        """Stop the running segmentation at its next step."""
        if self._worker is not None:
            self._worker.quit()
            self.status.setText("cancelling...")

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _on_progress(self, rec: sg.SegmentProgress) -> None:
        self.progress.setValue(int(1000 * rec.fraction))
        self.status.setText(rec.message)

    def _on_error(self, exc: Exception) -> None:
        self.status.setText(f"Error: {exc}")

    def _on_finished(self) -> None:
        if self.status.text() == "cancelling...":
            self.status.setText("cancelled")
        self._worker = None
        self.cancel_button.setEnabled(False)
        self.run_button.setEnabled(self.selected_layer() is not None)

    def _on_result(self, result: sg.SegmentationResult) -> None:
        self.set_result(result, self._source)

    def set_result(self, result: sg.SegmentationResult, source=None) -> None:
        """Show a result: new Labels layers, table, histogram, porosity."""
        import pandas as pd

        self.result = result
        name = source.name if source is not None else "volume"
        kw = {}
        if source is not None:
            kw = dict(scale=source.scale, translate=source.translate)
        features = pd.DataFrame({"index": result.table["label"], **result.table})
        self.mask_layer = self.viewer.add_labels(
            result.particle_mask.astype(np.uint8),
            name=f"{name} particle",
            opacity=0.25,
            **kw,
        )
        self.pores_layer = self.viewer.add_labels(
            result.labels, name=f"{name} pores", features=features, **kw
        )
        self.pores_layer.metadata["segmentation"] = result.summary()
        self._remove_preview()
        self.viewer.dims.ndisplay = 3
        frame_layer(self.viewer, self.pores_layer)  # the result alone on the canvas, framed
        self.mask_layer.visible = True
        self.viewer.layers.selection.active = self.pores_layer
        unit = self.unit.text().strip()
        self.table.set_table(result.table, unit)
        counts, edges = result.size_distribution(bins=max(5, min(30, result.pore_count)))
        self.diameter_hist.set_histogram(counts, edges)
        self.diameter_hist.axes.set_xlabel(f"equivalent diameter [{unit}]", fontsize=8)
        s = result.summary()
        self.porosity_label.setText(
            f"Porosity: {100 * s['porosity']:.2f} %  ({s['pore_count']} pores; open "
            f"{100 * s['open_porosity']:.2f} %, closed {100 * s['closed_porosity']:.2f} %)"
        )
        self.export_csv_button.setEnabled(True)
        self.export_tiff_button.setEnabled(True)
        self.progress.setValue(1000)
        self.status.setText(
            f"thresholds: particle {result.particle_threshold:.4g}, "
            f"pore {result.pore_threshold:.4g}"
        )

    # ----------------------------------------------------------------------------- table
    def center_on_pore(self, label: int) -> None:
        """Centre the camera (and the slice) on pore ``label`` and select it."""
        if self.result is None or self.pores_layer is None:
            return
        t = self.result.table
        rows = np.flatnonzero(t["label"] == label)
        if rows.size == 0:
            return
        r = int(rows[0])
        data_pt = np.array([t["centroid_z"][r], t["centroid_y"][r], t["centroid_x"][r]])
        world = np.asarray(self.pores_layer.data_to_world(data_pt), dtype=float)
        if self.viewer.dims.ndisplay == 3:
            self.viewer.camera.center = tuple(world[-3:])
        else:
            self.viewer.camera.center = tuple(world[-2:])
        self.viewer.dims.set_point(self.viewer.dims.ndim - 3, float(world[-3]))
        self.pores_layer.selected_label = int(label)

    # ----------------------------------------------------------------------------- export
    def export_csv(self, path, overwrite: bool = False):
        """Write the pore table to ``path`` (CSV)."""
        if self.result is None:
            raise ValueError("no segmentation result to export; run the segmentation first")
        return sg.save_table_csv(self.result.table, path, overwrite=overwrite)

    def export_labels(self, path, overwrite: bool = False):
        """Write the pore labels to ``path`` (TIFF)."""
        if self.result is None:
            raise ValueError("no segmentation result to export; run the segmentation first")
        return sg.save_labels_tiff(
            self.result.labels, path, overwrite=overwrite, voxel_size=self.result.voxel_size
        )

    def _ask_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export pore table", "pores.csv", "CSV (*.csv)")
        if path:  # the dialog has already asked before replacing a file
            self._export(self.export_csv, path)

    def _ask_export_labels(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export pore labels", "pores.tif", "TIFF (*.tif *.tiff)"
        )
        if path:
            self._export(self.export_labels, path)

    def _export(self, fn, path) -> None:
        try:
            out = fn(path, overwrite=True)
        except (OSError, ValueError) as exc:
            from napari.utils.notifications import show_error

            show_error(f"Export failed: {exc}")
            return
        self.status.setText(f"wrote {out}")
