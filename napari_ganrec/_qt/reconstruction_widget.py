"""The reconstruction dock widget: pick an input, set angles and centre, run, watch it converge.

Layout and wiring only: the run itself lives in :mod:`napari_ganrec.widget_model.run` (Qt-free) and
:class:`~napari_ganrec._qt.run_controller.RunController` (worker and live layers). Everything the
worker needs is captured here, on the main thread, when Run is pressed.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Shapes
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject, Qt
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
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..center import CenterEstimate, center_scan, estimate_center
from ..geometry import Geometry, angles_from_range
from ..io import NotLineIntegralsError
from ..widget_model.inputs import (
    BINNINGS,
    LAYOUT_LABELS,
    LAYOUTS,
    Binning,
    angles_from_metadata,
    cpu_hint,
    fbp_preview,
    input_shape,
    layer_line_integrals,
    read_angles_file,
    scan_centers,
    slice_marker_lines,
)
from ..widget_model.run import METHOD_LABELS, RunParams, RunState, format_seconds, warm_up
from .framing import frame_layer
from .loss_plot import LossPlot
from .run_controller import RunController
from .solver_options import SolverOptions
from .wedge_plot import WedgePlot

if TYPE_CHECKING:  # pragma: no cover
    import napari

MARKER_KEY = "napari_ganrec_slice_marker"
PREVIEW_KEY = "napari_ganrec_preview"
ANGLE_SOURCES = ("layer metadata", "range", "file")
#: What the input holds (the CLI's --data), label -> choice of :func:`napari_ganrec.io.line_integrals`
DATA_CHOICES = {"auto (from the file)": "auto", "raw counts": "raw", "transmission": "transmission",
                "line integrals": "line-integrals"}
PREPROCESS_WIDGET = "Pre-processing and centre"
PLUGIN = "napari-ganrec"


def available_devices() -> list[str]:
    """``auto``, ``cpu`` and every CUDA device torch sees (``cuda:0``, ...)."""
    out = ["auto", "cpu"]
    try:
        import torch

        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
    except Exception:  # noqa: BLE001 - a broken torch must not break the widget
        pass
    return out


def _unwrap(obj):
    """The object behind napari's ``PublicOnlyProxy`` (itself when not wrapped)."""
    return getattr(obj, "__wrapped__", obj)


def _spin(lo: int, hi: int, value: int, tip: str = "") -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _dspin(lo: float, hi: float, value: float, step: float = 1.0, decimals: int = 2,
           tip: str = "") -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setDecimals(decimals)
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    return w


class ReconstructionWidget(QWidget):
    """Dock widget streaming a GANrec (or TV / SIRT / FBP) reconstruction into napari.

    napari opens it from the Plugins menu with the viewer (it passes the viewer to the argument
    annotated ``napari.viewer.Viewer``).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose image layers are the inputs and which receives the live layers.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        viewer = self.viewer = napari_viewer
        self.state = RunState()
        self.controller = RunController(viewer, self.state, self)
        self._aux_worker = None
        self._docked = False
        self._closed = False
        self.last_fbp_seconds: float | None = None
        self.marker_layer: Shapes | None = None
        self.preview_layer: Image | None = None
        self.scan_layer: Image | None = None
        #: the automatic centre of the current input (None until found) and what it was found on
        self.auto_center: CenterEstimate | None = None
        self._auto_key = None
        self._auto_worker = None
        self._auto_pending = None
        #: how the centre in the box was chosen: "automatic", "typed" or "centre scan"
        self.center_origin = "automatic"
        self._auto_row = 0
        self._auto_running_key = None
        self._auto_done = threading.Event()
        self._auto_done.set()
        self._build()
        self._connect()
        self._refresh_layers()
        self._watch_main_window()
        self._aux_cancel = threading.Event()
        self._aux_done = threading.Event()
        self._warm_thread = threading.Thread(
            target=self._warm_up, args=(self.device_combo.currentText(),), daemon=True,
            name="napari-ganrec warm-up")
        self._warm_thread.start()

    @property
    def warmed_up(self) -> bool:
        """Whether the background engine warm-up is over."""
        return not self._warm_thread.is_alive()

    @staticmethod
    def _warm_up(device: str) -> None:
        """Initialise the engine in the background (see :func:`napari_ganrec.widget_model.run.warm_up`).

        A plain thread: it touches no widget or layer, and a failure here only means the first
        run initialises the engine itself (and reports any real error then).
        """
        try:
            warm_up(device)
        except Exception:  # noqa: BLE001, S110 - best effort
            pass

    # ================================================================== construction
    def _build(self) -> None:
        inner = QWidget()
        col = QVBoxLayout(inner)
        col.setContentsMargins(4, 4, 4, 4)

        # --- input
        box = QGroupBox("Input")
        form = QFormLayout(box)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("2-D image: one sinogram (angles x detector); 3-D: a "
                                    "projection stack (angles x rows x detector) or sinograms")
        self.layout_combo = QComboBox()
        for key in LAYOUTS:
            self.layout_combo.addItem(LAYOUT_LABELS[key], key)
        self.layout_combo.setToolTip("Which axis the sample rotates about (3-D inputs)")
        self.slice_spin = _spin(0, 0, 0, "First slice to reconstruct")
        self.nslices_spin = _spin(1, 1, 1, "Number of slices from the first")
        row = QHBoxLayout()
        row.addWidget(self.slice_spin)
        row.addWidget(QLabel("count"))
        row.addWidget(self.nslices_spin)
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
        brow = QHBoxLayout()
        brow.addWidget(self.bin_combo)
        brow.addWidget(self.bin_rows_check)
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
        form.addRow("slice", row)
        form.addRow("", self.shape_label)
        form.addRow("binning", brow)
        form.addRow("", self.hint_label)
        form.addRow(self.problem_label)
        form.addRow(self.preprocess_button)
        col.addWidget(box)

        # --- angles
        box = QGroupBox("Angles (degrees)")
        h = QHBoxLayout(box)
        form = QFormLayout()
        self.angle_source = QComboBox()
        self.angle_source.addItems(ANGLE_SOURCES)
        self.angle_start = _dspin(-720, 720, 0.0, 1.0, 2, "First angle")
        self.angle_stop = _dspin(-720, 720, 180.0, 1.0, 2, "Last angle (or end of a 180/360 "
                                 "degree scan, which excludes it)")
        self.angle_count = QLabel("")
        self.angle_count.setToolTip("Number of projections: always the image's angle axis")
        self.angle_file = QLineEdit()
        self.angle_file.setPlaceholderText("text file, one angle per line")
        self.angle_browse = QPushButton("...")
        self.angle_browse.setFixedWidth(28)
        frow = QHBoxLayout()
        frow.addWidget(self.angle_file)
        frow.addWidget(self.angle_browse)
        rrow = QHBoxLayout()
        rrow.addWidget(self.angle_start)
        rrow.addWidget(QLabel("to"))
        rrow.addWidget(self.angle_stop)
        srcrow = QHBoxLayout()
        srcrow.addWidget(self.angle_source, 1)
        srcrow.addWidget(self.angle_count)
        form.addRow("from", srcrow)
        form.addRow("range", rrow)
        form.addRow("file", frow)
        h.addLayout(form, 1)
        self.wedge = WedgePlot()
        h.addWidget(self.wedge)
        col.addWidget(box)

        # --- centre
        box = QGroupBox("Centre of rotation (pixels)")
        form = QFormLayout(box)
        self.center_spin = _dspin(0, 100000, 32.0, 0.5, 2, "Detector coordinate of the axis (pixels of "
                                  "the input, before binning); typing one switches 'automatic' off")
        self.auto_center_check = QCheckBox("automatic")
        self.auto_center_check.setChecked(True)
        self.auto_center_check.setToolTip("The command line's automatic centre: Vo's method for 180 "
                                          "degrees, phase correlation for 360, the centre-of-mass sinusoid "
                                          "fit for limited angles, on the middle slice of the range")
        self.center_label = QLabel("")
        self.center_label.setWordWrap(True)
        self.fbp_button = QPushButton("FBP preview")
        self.fbp_button.setToolTip("Filtered back projection of the current slice")
        crow = QHBoxLayout()
        crow.addWidget(self.center_spin)
        crow.addWidget(self.auto_center_check)
        crow.addWidget(self.fbp_button)
        self.scan_width = _dspin(0, 1000, 4.0, 0.5, 2, "Scan centre +- this many pixels")
        self.scan_step = _dspin(0.05, 100, 1.0, 0.25, 2, "Centre scan step (pixels)")
        self.scan_button = QPushButton("Centre scan")
        self.scan_button.setToolTip("A stack of FBP slices over a range of centres")
        self.use_scan_button = QPushButton("Use shown")
        self.use_scan_button.setToolTip("Take the centre of the scan slice shown in the viewer")
        srow = QHBoxLayout()
        srow.addWidget(QLabel("+-"))
        srow.addWidget(self.scan_width)
        srow.addWidget(QLabel("step"))
        srow.addWidget(self.scan_step)
        srow2 = QHBoxLayout()
        srow2.addWidget(self.scan_button)
        srow2.addWidget(self.use_scan_button)
        form.addRow("centre", crow)
        form.addRow("", self.center_label)
        form.addRow("scan", srow)
        form.addRow("", srow2)
        col.addWidget(box)

        # --- method
        box = QGroupBox("Method")
        form = QFormLayout(box)
        self.method_combo = QComboBox()
        for key, label in METHOD_LABELS.items():
            self.method_combo.addItem(label, key)
        self.iterations_spin = _spin(1, 1_000_000, 200, "Iterations to run")
        self.preview_spin = _spin(1, 100_000, 10, "Show the image every N iterations")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.seed_spin = _spin(0, 2**31 - 1, 0, "Seed of the network initialisation")
        self.residual_check = QCheckBox("show sinogram residual")
        self.residual_check.setToolTip("A second live layer: model sinogram minus data")
        irow = QHBoxLayout()
        irow.addWidget(self.iterations_spin)
        irow.addWidget(QLabel("preview every"))
        irow.addWidget(self.preview_spin)
        drow = QHBoxLayout()
        drow.addWidget(self.device_combo)
        drow.addWidget(QLabel("seed"))
        drow.addWidget(self.seed_spin)
        form.addRow("method", self.method_combo)
        form.addRow("iterations", irow)
        form.addRow("device", drow)
        form.addRow("", self.residual_check)
        self.uncertainty_check = QCheckBox("show uncertainty (reweighted TV, GANrec)")
        self.uncertainty_check.setToolTip(
            "A live layer of the pixel-wise spread of the last iterates: bright where the data "
            "do not pin the image down (e.g. along the missing wedge)")
        form.addRow("", self.uncertainty_check)
        self.volume_check = QCheckBox("volume: slice by slice, warm start")
        self.volume_check.setToolTip(
            "Reconstruct the slice range one slice after another: the first slice gets the full "
            "iterations, each later one starts from the previous slice's state and gets the warm "
            "iterations; the live layer fills slice by slice")
        self.warm_spin = _spin(1, 1_000_000, 100, "Iterations of each later slice (volume mode)")
        vrow = QHBoxLayout()
        vrow.addWidget(self.volume_check)
        vrow.addWidget(QLabel("warm iterations"))
        vrow.addWidget(self.warm_spin)
        form.addRow("", vrow)
        self.solver_options = SolverOptions()
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(self.solver_options)
        form.addRow(self.advanced)
        col.addWidget(box)

        # --- run
        box = QGroupBox("Run")
        v = QVBoxLayout(box)
        brow = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        for b in (self.run_button, self.pause_button, self.stop_button):
            brow.addWidget(b)
        v.addLayout(brow)
        self.status_label = QLabel("idle")
        self.status_label.setWordWrap(True)
        v.addWidget(self.status_label)
        self.eta_label = QLabel("")
        self.eta_label.setToolTip("Time left, from the rate since the first iterations")
        v.addWidget(self.eta_label)
        self.loss_plot = LossPlot()
        v.addWidget(self.loss_plot)
        col.addWidget(box)
        col.addStretch(1)

        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(360)
        self._update_buttons()
        self._on_angle_source()

    def _connect(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self._refresh_layers)
        ev.removed.connect(self._refresh_layers)
        ev.moved.connect(self._refresh_layers)
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.layout_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.data_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.slice_spin.valueChanged.connect(self._on_slice_changed)
        self.nslices_spin.valueChanged.connect(self._on_slice_changed)
        self.bin_combo.currentIndexChanged.connect(self._on_binning)
        self.bin_rows_check.toggled.connect(self._on_binning)
        self.device_combo.currentIndexChanged.connect(self._update_hint)
        self.preprocess_button.clicked.connect(self.open_preprocessing)
        self.center_spin.valueChanged.connect(self._on_center_typed)
        self.auto_center_check.toggled.connect(self._on_auto_center)
        self.angle_source.currentIndexChanged.connect(self._on_angle_source)
        for w in (self.angle_start, self.angle_stop):
            w.valueChanged.connect(self._update_wedge)
        self.angle_file.editingFinished.connect(self._update_wedge)
        self.angle_browse.clicked.connect(self._browse_angles)
        self.fbp_button.clicked.connect(self.fbp_preview)
        self.scan_button.clicked.connect(self.center_scan)
        self.use_scan_button.clicked.connect(self.use_scan_center)
        self.method_combo.currentIndexChanged.connect(self._on_method)
        self.run_button.clicked.connect(self.run)
        self.pause_button.clicked.connect(self.controller.toggle_pause)
        self.stop_button.clicked.connect(self.controller.stop)
        self.state.events.status.connect(self._on_status)
        self.state.events.iteration.connect(self._on_progress)
        self.controller.run_started.connect(lambda: self.loss_plot.start(self.state.total))
        # the loss plot and the live layers take turns: never two expensive paints in a row
        quiet = 0.04
        self.loss_plot.defer = lambda: self.controller._last_render + quiet - time.perf_counter()
        self.controller.defer = lambda: self.loss_plot.last_draw + quiet - time.perf_counter()
        self.controller.run_ended.connect(self._on_run_ended)

    def _disconnect_viewer(self) -> None:
        ev = self.viewer.layers.events
        for emitter in (ev.inserted, ev.removed, ev.moved):
            try:
                emitter.disconnect(self._refresh_layers)
            except (RuntimeError, ValueError, TypeError):
                pass

    # ================================================================== input
    def _image_layers(self) -> list[Image]:
        return [
            ly for ly in self.viewer.layers
            if isinstance(ly, Image) and ly.ndim in (2, 3) and not ly.rgb
            and not ly.metadata.get("napari_ganrec_result") and not ly.metadata.get(PREVIEW_KEY)
        ]

    def _refresh_layers(self, event=None) -> None:
        current = self.layer_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        elif names:
            self.layer_combo.setCurrentIndex(0)
        self.layer_combo.blockSignals(False)
        if current != self.layer_combo.currentText() or event is None:
            self._on_layer_changed()

    def input_layer(self) -> Image | None:
        """The chosen input layer (or ``None``)."""
        name = self.layer_combo.currentText()
        if name and name in self.viewer.layers:
            ly = self.viewer.layers[name]
            if isinstance(ly, Image):
                return ly
        return None

    def set_input(self, layer: Image | str) -> None:
        """Choose the input layer (by layer or name)."""
        name = layer if isinstance(layer, str) else layer.name
        idx = self.layer_combo.findText(name)
        if idx < 0:
            raise ValueError(f"no 2-D or 3-D image layer named {name!r}")
        self.layer_combo.setCurrentIndex(idx)
        self._on_layer_changed()

    def layout_key(self) -> str:
        return self.layout_combo.currentData()

    def _input_info(self):
        layer = self.input_layer()
        if layer is None:
            return None, None
        return layer, input_shape(layer.data.shape, self.layout_key())

    def _on_layer_changed(self, *_) -> None:
        layer, info = self._input_info()
        if layer is None:
            self.shape_label.setText("no 2-D or 3-D image layer")
            self._update_marker()
            return
        self.layout_combo.setEnabled(layer.ndim == 3)
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
        md = layer.metadata
        self.angle_count.setText(f"{info.n_angles} angles")
        meta_angles = angles_from_metadata(md, info.n_angles)
        if meta_angles is not None:
            self.angle_source.setCurrentText("layer metadata")
            self.angle_start.setValue(float(meta_angles[0]))
            self.angle_stop.setValue(float(meta_angles[-1]))
        elif self.angle_source.currentText() == "layer metadata":
            self.angle_source.setCurrentText("range")
        self.center_spin.blockSignals(True)  # a clamp is no centre the user typed
        self.center_spin.setMaximum(float(info.n_det))
        self.center_spin.blockSignals(False)
        self._on_angle_source()
        self._update_marker()
        self._check_input()
        self._update_hint()
        self._request_auto_center()

    # ================================================================== data kind, binning, hints
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

    def _on_binning(self, *_) -> None:
        self._update_hint()
        self._update_marker()

    def _show_problem(self, message: str) -> None:
        """Say in the widget why the input cannot be reconstructed, and offer pre-processing."""
        self.problem_label.setText(message)
        self.problem_label.setVisible(bool(message))
        self.preprocess_button.setVisible(bool(message))

    def _check_input(self) -> None:
        """Tell what the input is taken for (and why), or why it cannot be made into line integrals."""
        layer, info = self._input_info()
        self._show_problem("")
        self.kind_label.setText("")
        if layer is None:
            return
        try:
            start, stop = self.slice_range()
            _, kind = self._line_integrals(layer, info, start, start + 1, probe=True)
        except NotLineIntegralsError as exc:
            self._show_problem(f"Cannot reconstruct {layer.name!r}: {exc}")
            return
        except ValueError as exc:  # no angles yet, ...: said when the user runs
            self.kind_label.setText(str(exc))
            return
        what = {"raw": "raw counts: flat/dark corrected and -log'd before the run",
                "transmission": "transmission: -log'd before the run",
                "line_integrals": "line integrals: used as they are"}[kind.kind]
        self.kind_label.setText(f"{what} ({'assumed: ' if kind.assumed else ''}{kind.reason})")

    def _line_integrals(self, layer, info, start: int, stop: int, probe: bool = False, angles=None):
        """Line integrals of rows ``start:stop`` of ``layer`` through the CLI's read path."""
        if angles is None:
            angles = self.current_angles()
        if probe:  # one row is enough to know what the data are
            stop = start + 1
        return layer_line_integrals(layer.data, layer.metadata, info.layout, angles, start, stop,
                                    self.data_choice())

    def _update_hint(self, *_) -> None:
        _, info = self._input_info()
        if info is None:
            self.hint_label.setText("")
            return
        b = self.binning()
        self.hint_label.setText(cpu_hint(b.n_det(info.n_det), self.device_combo.currentText(), b.factor))

    def open_preprocessing(self):
        """Open the pre-processing widget (through the Plugins menu's own call)."""
        return self.viewer.window.add_plugin_dock_widget(PLUGIN, PREPROCESS_WIDGET)

    # ================================================================== automatic centre
    def _center_row(self) -> int:
        """The row the automatic centre is found on: the middle of the slice range (as the CLI)."""
        start, stop = self.slice_range()
        return (start + stop) // 2

    def _auto_inputs(self):
        """``(key, compute)`` of the automatic centre of the current input, or ``None``."""
        layer, info = self._input_info()
        if layer is None:
            return None
        try:
            angles = self.current_angles()
        except ValueError:
            return None
        row = self._center_row()
        # napari's PublicOnlyProxy makes a new wrapper at each access: identify what is behind it
        key = (id(_unwrap(layer)), id(_unwrap(layer.data)), info.layout, row, self.data_choice(),
               tuple(angles))
        data, md, layout, choice = layer.data, dict(layer.metadata), info.layout, self.data_choice()

        def compute() -> CenterEstimate:
            sino, _ = layer_line_integrals(data, md, layout, angles, row, row + 1, choice)
            return estimate_center(sino[0], angles)

        return key, compute, row

    def _request_auto_center(self) -> None:
        """Find the automatic centre of the current input in the background (if not known)."""
        inputs = self._auto_inputs()
        if inputs is None:
            self.center_label.setText("")
            return
        key, compute, row = inputs
        if key == self._auto_key and self.auto_center is not None:
            self._apply_auto_center()
            return
        self.auto_center, self._auto_key = None, None
        if self._auto_worker is not None and key == self._auto_running_key:
            self._auto_pending = None  # the one running is the one wanted
            return
        if self._auto_worker is not None:  # one at a time: the newest request runs next
            self._auto_pending = (key, compute, row)
            return
        self._start_auto_worker(key, compute, row)

    def _start_auto_worker(self, key, compute, row) -> None:
        self.center_label.setText(f"finding the automatic centre on row {row}...")

        done = self._auto_done = threading.Event()

        def run():
            try:
                return key, compute(), row
            except ValueError as exc:  # NotLineIntegralsError included
                return key, exc, row
            finally:
                done.set()

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_auto_center_found)
        worker.errored.connect(lambda exc: self.center_label.setText(f"automatic centre failed: {exc}"))
        worker.finished.connect(self._on_auto_worker_finished)
        self._auto_worker = worker
        self._auto_running_key = key
        worker.start()

    def _on_auto_worker_finished(self) -> None:
        self._auto_worker = None
        self._auto_running_key = None
        pending, self._auto_pending = self._auto_pending, None
        if pending is not None and not self._closed:
            self._start_auto_worker(*pending)

    def _on_auto_center_found(self, result) -> None:
        key, est, row = result
        if self._closed or self._auto_pending is not None:
            return
        inputs = self._auto_inputs()
        if inputs is None or inputs[0] != key:
            return  # the input changed meanwhile; a newer request is on its way
        if isinstance(est, Exception):
            self.auto_center, self._auto_key = None, None
            self.center_label.setText(f"no automatic centre: {est}; type one")
            return
        self.auto_center, self._auto_key = est, key
        self._auto_row = row
        self._apply_auto_center()

    def _apply_auto_center(self) -> None:
        est = self.auto_center
        if est is None:
            return
        if self.auto_center_check.isChecked():
            self._set_center(est.center, "automatic")
        self.center_label.setText(f"automatic: {est.center:.2f} px by {est.label}, row {self._auto_row}"
                                  + ("" if self.auto_center_check.isChecked() else " (not used)"))

    def _set_center(self, value: float, origin: str) -> None:
        self.center_spin.blockSignals(True)
        self.center_spin.setValue(float(value))
        self.center_spin.blockSignals(False)
        self.center_origin = origin

    def _on_center_typed(self, *_) -> None:
        """The user typed a centre: it is used as typed."""
        self.center_origin = "typed"
        self.auto_center_check.blockSignals(True)
        self.auto_center_check.setChecked(False)
        self.auto_center_check.blockSignals(False)
        self._apply_auto_center()

    def _on_auto_center(self, on: bool) -> None:
        if on:
            self._request_auto_center()
        else:
            self._apply_auto_center()

    def set_center(self, value: float) -> None:
        """Type a centre (detector pixels of the input): automatic is switched off."""
        self.center_spin.setValue(float(value))
        self._on_center_typed()

    def wait_auto_center(self, timeout: float = 120.0) -> CenterEstimate:
        """The automatic centre of the current input, computed here if not found yet (blocks)."""
        inputs = self._auto_inputs()
        if inputs is None:
            raise ValueError("choose an input image layer (with angles) first")
        key, compute, row = inputs
        if key != self._auto_key or self.auto_center is None:
            try:
                est = compute()
            except NotLineIntegralsError:
                raise
            except ValueError as exc:
                raise ValueError(f"no automatic centre on row {row}: {exc}; type a centre (or use a "
                                 "centre scan)") from None
            self.auto_center, self._auto_key, self._auto_row = est, key, row
            self._apply_auto_center()
        return self.auto_center

    def _on_slice_changed(self, *_) -> None:
        _, info = self._input_info()
        if info is not None:
            self.nslices_spin.blockSignals(True)
            self.nslices_spin.setRange(1, max(1, info.n_slices - self.slice_spin.value()))
            self.nslices_spin.blockSignals(False)
        self._update_marker()
        self._request_auto_center()

    def slice_range(self) -> tuple[int, int]:
        a = self.slice_spin.value()
        return a, a + self.nslices_spin.value()

    def _update_marker(self) -> None:
        """Draw the slice(s) to reconstruct as lines on the projections."""
        layer, info = self._input_info()
        lines = []
        if layer is not None and info.layout in ("vertical", "horizontal"):
            try:
                lines = slice_marker_lines(layer.data.shape, info.layout, *self.slice_range())
            except ValueError:
                lines = []
        marker = self.marker_layer
        if marker is not None and marker not in self.viewer.layers:
            marker = self.marker_layer = None
        if not lines:
            if marker is not None:
                marker.visible = False
            return
        scale = tuple(layer.scale[-2:])
        translate = tuple(layer.translate[-2:])
        if marker is None:
            active = self.viewer.layers.selection.active
            self.marker_layer = self.viewer.add_shapes(
                lines, shape_type="line", edge_color="yellow", edge_width=max(0.5, 0.01 * max(
                    layer.data.shape[-2:])), name="GANrec slice", scale=scale,
                translate=translate, metadata={MARKER_KEY: True}, opacity=0.8)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        else:
            marker.data = lines
            marker.shape_type = ["line"] * len(lines)
            marker.scale = scale
            marker.translate = translate
            marker.visible = True

    # ================================================================== angles
    def _on_angle_source(self, *_) -> None:
        src = self.angle_source.currentText()
        for w in (self.angle_start, self.angle_stop):
            w.setEnabled(src == "range")
        self.angle_file.setEnabled(src == "file")
        self.angle_browse.setEnabled(src == "file")
        self._update_wedge()

    def _browse_angles(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Angles file (degrees)", "",
                                              "Text (*.txt *.csv *.dat *.tlt *.rawtlt);;All (*)")
        if path:
            self.angle_file.setText(path)
            self.angle_source.setCurrentText("file")
            self._update_wedge()

    def current_angles(self) -> np.ndarray:
        """The projection angles (degrees) the run will use.

        Raises
        ------
        ValueError
            No input, no angles in the metadata or file, or a count that differs from the image.
        """
        layer, info = self._input_info()
        if layer is None:
            raise ValueError("choose an input image layer first")
        src = self.angle_source.currentText()
        if src == "layer metadata":
            a = angles_from_metadata(layer.metadata, info.n_angles)
            if a is None:
                raise ValueError(f"layer {layer.name!r} has no 'angles' metadata with "
                                 f"{info.n_angles} values; choose 'range' or 'file'")
            return a
        if src == "file":
            path = self.angle_file.text().strip()
            if not path:
                raise ValueError("choose an angles file (or another angle source)")
            return read_angles_file(path, info.n_angles)
        return angles_from_range(self.angle_start.value(), self.angle_stop.value(), info.n_angles)

    def _update_wedge(self, *_) -> None:
        try:
            a = self.current_angles()
        except ValueError as exc:
            self.wedge.set_angles([])
            self.wedge.label.setText(str(exc))
            return
        self.wedge.set_angles(a)
        self._request_auto_center()

    # ================================================================== method
    def _on_method(self, *_) -> None:
        m = self.method_combo.currentData()
        self.solver_options.set_method(m)
        iterative = m != "fbp"
        self.iterations_spin.setEnabled(iterative)
        self.preview_spin.setEnabled(iterative)
        self.seed_spin.setEnabled("ganrec" in m.split("+"))

    def set_method(self, method: str) -> None:
        """Choose the method by engine name (``"ganrec"``, ``"tv"``, ``"sirt"``, ``"fbp"``)."""
        idx = self.method_combo.findData(method)
        if idx < 0:
            raise ValueError(f"method must be one of {tuple(METHOD_LABELS)}, got {method!r}")
        self.method_combo.setCurrentIndex(idx)

    # ================================================================== capture and run
    def current_center(self) -> float:
        """The centre the run uses, in detector pixels of the input (before binning).

        With 'automatic' on, the automatic centre (computed now if not found yet).
        """
        if self.auto_center_check.isChecked():
            return self.wait_auto_center().center
        return float(self.center_spin.value())

    def capture(self, preview: bool = False):
        """Everything a run needs, as plain values: ``(sinograms, params, context)``.

        The sinograms are line integrals read by the CLI's read path (raw counts flat/dark corrected
        and ``-log``'d, see :func:`napari_ganrec.widget_model.inputs.layer_line_integrals`), binned as the
        widget says. With ``preview``, only the first (binned) slice of the range. Raises
        ``ValueError`` (``NotLineIntegralsError`` when the data cannot be made into line integrals)
        with a message for the user when something is missing or inconsistent.
        """
        layer, info = self._input_info()
        if layer is None:
            raise ValueError("choose an input image layer first")
        angles = self.current_angles()
        binning = self.binning()
        start, stop = self.slice_range()
        if preview:
            stop = min(start + binning.row_factor, info.n_slices)
        r0, r1 = binning.rows_used(start, stop)
        try:
            sinos, kind = self._line_integrals(layer, info, r0, r1, angles=angles)
        except NotLineIntegralsError as exc:
            self._show_problem(f"Cannot reconstruct {layer.name!r}: {exc}")
            raise
        sinos = binning.apply(sinos)
        center_px = self.current_center()
        center = binning.center(center_px)
        Geometry.create(angles, sinos.shape[-1], center)  # validates the centre now
        n_out = sinos.shape[0]
        params = RunParams(
            angles=tuple(angles),
            method=self.method_combo.currentData(),
            iterations=self.iterations_spin.value(),
            preview_every=self.preview_spin.value(),
            center=center,
            device=self.device_combo.currentText(),
            seed=self.seed_spin.value(),
            options=self.solver_options.options(),
            residual=self.residual_check.isChecked(),
            uncertainty=self.uncertainty_check.isChecked(),
            volume_slices=n_out if self.volume_check.isChecked() and n_out > 1 else 0,
            warm_iterations=self.warm_spin.value(),
        )
        if n_out == 1:
            sinos = sinos[0]
        det_scale = float(layer.scale[-1] if info.layout != "horizontal" else layer.scale[-2])
        b = binning.factor
        extra = {
            "center": float(center_px),
            "center_binned": float(center),
            "center_method": (self.auto_center.method if self.center_origin == "automatic"
                              and self.auto_center is not None else self.center_origin),
            "data_kind": kind.kind,
            "data_kind_reason": kind.reason,
            "binning": binning.metadata(),
            "rows_read": [int(r0), int(r1)],
        }
        context = dict(
            source=layer.name,
            slices=None if info.layout == "sinogram" else (start, stop),
            layout=info.layout,
            scale=(det_scale * b, det_scale * b),
            slice_scale=float(binning.row_factor),
            extra=extra,
        )
        return sinos, params, context

    def run(self) -> bool:
        """Start a run (the Run button); returns whether one started."""
        if self.controller.busy:
            show_error("A reconstruction is already running: stop it first.")
            return False
        try:
            sinos, params, context = self.capture()
        except ValueError as exc:
            show_error(f"Cannot start: {exc}")
            return False
        self._show_problem("")
        self._update_hint()
        return self.controller.start(sinos, params, **context)

    # ================================================================== previews
    def _start_aux(self, func, on_done, *args) -> bool:
        if self._aux_worker is not None:
            show_error("A preview is still being computed.")
            return False
        cancelled = self._aux_cancel = threading.Event()
        done = self._aux_done = threading.Event()

        def guarded():
            try:
                return None if cancelled.is_set() else func(*args)
            finally:
                done.set()

        worker = create_worker(guarded, _start_thread=False, _ignore_errors=True)
        t0 = time.perf_counter()

        def returned(result):
            if self._closed or result is None:
                return
            on_done(result, time.perf_counter() - t0)

        def errored(exc):
            show_error(f"Preview failed: {exc}")

        def finished():
            self._aux_worker = None
            self.fbp_button.setEnabled(True)
            self.scan_button.setEnabled(True)

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self._aux_worker = worker
        self.fbp_button.setEnabled(False)
        self.scan_button.setEnabled(False)
        worker.start()
        return True

    def _preview_layer(self, attr: str, data: np.ndarray, name: str, md: dict,
                       scale: tuple[float, ...] | None = None) -> Image:
        """Add (or refresh) a preview layer and frame it on the canvas."""
        layer = getattr(self, attr)
        md = {PREVIEW_KEY: True, **md}
        if layer is None or layer not in self.viewer.layers:
            layer = self.viewer.add_image(data, name=name, metadata=md, colormap="gray", scale=scale)
            setattr(self, attr, layer)
        else:
            layer.data = data
            if scale is not None:
                layer.scale = scale
            layer.metadata.update(md)
            layer.reset_contrast_limits()
        frame_layer(self.viewer, layer)
        return layer

    def fbp_preview(self) -> bool:
        """FBP of the current slice at the current centre, in a thread (the 'FBP preview')."""
        try:
            sinos, params, ctx = self.capture(preview=True)
        except ValueError as exc:
            show_error(f"Cannot preview: {exc}")
            return False
        angles, center = np.asarray(params.angles), params.center
        device = params.device
        extra = ctx["extra"]

        def done(img, seconds):
            self.last_fbp_seconds = seconds
            self._preview_layer("preview_layer", img[0], f"{ctx['source']} FBP preview", {
                "method": "fbp", "angles": [float(a) for a in angles], "slices": ctx["slices"],
                "elapsed_s": round(seconds, 3), **extra}, scale=ctx["scale"])
            self.status_label.setText(f"FBP preview at centre {extra['center']:.2f} px in {seconds:.2f} s")

        return self._start_aux(fbp_preview, done, sinos[None] if sinos.ndim == 2 else sinos,
                               angles, center, device)

    def center_scan(self) -> bool:
        """A stack of FBP slices over centres around the current one (the 'Centre scan').

        The centres are in detector pixels of the input; the scan runs on the binned slice.
        """
        try:
            sinos, params, ctx = self.capture(preview=True)
            center_px = ctx["extra"]["center"]
            centers = scan_centers(center_px, self.scan_width.value(), self.scan_step.value())
        except ValueError as exc:
            show_error(f"Cannot scan: {exc}")
            return False
        _, info = self._input_info()
        centers = centers[(centers >= 0) & (centers <= info.n_det)]
        binning = self.binning()
        binned = np.array([binning.center(c) for c in centers])
        angles = np.asarray(params.angles)
        sino = sinos if sinos.ndim == 2 else sinos[0]

        def done(stack, seconds):
            self._preview_layer("scan_layer", stack, f"{ctx['source']} centre scan", {
                "method": "fbp", "centers": [float(c) for c in centers], "slices": ctx["slices"],
                "binning": ctx["extra"]["binning"], "elapsed_s": round(seconds, 3)},
                scale=(1.0, *ctx["scale"]))
            step = list(self.viewer.dims.current_step)
            axis = self.viewer.dims.ndim - 3
            if axis >= 0:
                step[axis] = len(centers) // 2
                self.viewer.dims.current_step = tuple(step)
            self.status_label.setText(
                f"centre scan {centers[0]:g} to {centers[-1]:g} ({len(centers)} slices) in "
                f"{seconds:.2f} s: scroll through it, then 'Use shown'")

        return self._start_aux(center_scan, done, sino, angles, binned)

    def use_scan_center(self) -> float | None:
        """Set the centre to the one of the scan slice the viewer shows ('automatic' goes off)."""
        layer = self.scan_layer
        if layer is None or layer not in self.viewer.layers:
            show_error("Run a centre scan first.")
            return None
        centers = layer.metadata.get("centers") or []
        axis = self.viewer.dims.ndim - 3
        idx = int(self.viewer.dims.current_step[axis]) if axis >= 0 else 0
        idx = min(max(idx, 0), len(centers) - 1)
        c = float(centers[idx])
        self.auto_center_check.blockSignals(True)
        self.auto_center_check.setChecked(False)
        self.auto_center_check.blockSignals(False)
        self._set_center(c, "centre scan")
        self._apply_auto_center()
        self.status_label.setText(f"centre set to {c:g} (from the centre scan)")
        return c

    # ================================================================== state
    def _update_buttons(self) -> None:
        status = self.state.status
        active = status in ("running", "paused", "stopping")
        self.run_button.setEnabled(not active)
        self.pause_button.setEnabled(status in ("running", "paused"))
        self.pause_button.setText("Resume" if status == "paused" else "Pause")
        self.stop_button.setEnabled(status in ("running", "paused"))

    def _on_status(self, status: str) -> None:
        self._update_buttons()
        self._on_progress()

    def _on_progress(self, *_) -> None:
        s = self.state
        self.loss_plot.set_history(s.loss_history)
        if s.status == "idle":
            self.status_label.setText("idle")
            return
        txt = f"{s.status}: iteration {s.iteration}/{s.total}, {s.elapsed:.1f} s"
        eta = s.eta() if s.status == "running" else None
        if eta is not None:
            self.eta_label.setText(f"ETA {format_seconds(eta)} (whole run about "
                                   f"{format_seconds(s.elapsed + eta)})")
        elif s.status != "running":
            self.eta_label.setText("")
        losses = {k: v for k, v in s.last_losses().items() if v != 0}
        if losses:
            txt += "\n" + ", ".join(f"{k} {v:.3g}" for k, v in list(losses.items())[:4])
        if s.message:
            txt += f"\n{s.message}"
        self.status_label.setText(txt)

    def _on_run_ended(self, status: str) -> None:
        self.loss_plot.flush()
        self._on_progress()

    # ================================================================== closing
    def _watch_main_window(self) -> None:
        """Stop the run when the main window closes: every ancestor is watched (the dock widget
        first, then the main window it is put in), so the main window's close is seen."""
        self._watched: list = []

    def _watch(self) -> None:
        w = self.parent()
        while isinstance(w, QObject):
            if not any(w is o for o in self._watched):
                w.installEventFilter(self)
                self._watched.append(w)
            w = w.parent()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Close and isinstance(obj, QMainWindow):
            self.shutdown()
        elif event.type() == QEvent.Type.ParentChange:
            self._watch()  # the dock widget went into the main window
        return False

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
                self._watch()
            elif self._docked:  # napari removed the dock widget: stop the run
                self.shutdown()
        return super().event(event)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._watch()
        super().showEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop any run and preview and wait for their threads (closing the widget or viewer)."""
        if self._closed:
            return
        self._closed = True
        self.controller.shutdown()
        # a preview not yet started is cancelled; one running (seconds at most) is waited for
        self._aux_cancel.set()
        if self._aux_worker is not None and self._aux_worker.is_running:
            self._aux_done.wait(30)
        self._aux_worker = None
        self._auto_pending = None
        if self._auto_worker is not None:
            self._auto_done.wait(60)
        self._warm_thread.join(30)
        self._disconnect_viewer()
        for w in self._watched:
            try:
                w.removeEventFilter(self)
            except RuntimeError:  # already deleted
                pass
        self._watched = []
