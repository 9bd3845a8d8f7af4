"""The reconstruction dock widget: pick an input, set angles and centre, run, watch it converge.

Layout and wiring only: the run itself lives in :mod:`napari_ganrec.run_model` (Qt-free) and
:class:`~napari_ganrec._qt.run_controller.RunController` (worker and live layers). Everything the
worker needs is captured here, on the main thread, when Run is pressed.
"""

from __future__ import annotations

import threading
import time

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
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..geometry import Geometry, angles_from_range
from ..run_inputs import (
    LAYOUT_LABELS,
    LAYOUTS,
    angles_from_metadata,
    center_from_metadata,
    center_scan,
    extract_sinograms,
    fbp_preview,
    input_shape,
    read_angles_file,
    scan_centers,
    slice_marker_lines,
)
from ..run_model import METHOD_LABELS, RunParams, RunState, warm_up
from .loss_plot import LossPlot
from .run_controller import RunController
from .solver_options import SolverOptions
from .wedge_plot import WedgePlot

MARKER_KEY = "napari_ganrec_slice_marker"
PREVIEW_KEY = "napari_ganrec_preview"
ANGLE_SOURCES = ("layer metadata", "range", "file")


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

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are the inputs and which receives the live layers.
    """

    def __init__(self, viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.state = RunState()
        self.controller = RunController(viewer, self.state, self)
        self._aux_worker = None
        self._docked = False
        self._closed = False
        self.last_fbp_seconds: float | None = None
        self.marker_layer: Shapes | None = None
        self.preview_layer: Image | None = None
        self.scan_layer: Image | None = None
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
        """Initialise the engine in the background (see :func:`run_model.warm_up`).

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
        form.addRow("image", self.layer_combo)
        form.addRow("layout", self.layout_combo)
        form.addRow("slice", row)
        form.addRow("", self.shape_label)
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
        self.center_spin = _dspin(0, 100000, 32.0, 0.5, 2, "Detector coordinate of the axis")
        self.fbp_button = QPushButton("FBP preview")
        self.fbp_button.setToolTip("Filtered back projection of the current slice")
        crow = QHBoxLayout()
        crow.addWidget(self.center_spin)
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
        self.uncertainty_check = QCheckBox("show uncertainty (GANrec)")
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
        self.slice_spin.valueChanged.connect(self._on_slice_changed)
        self.nslices_spin.valueChanged.connect(self._on_slice_changed)
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
        self.center_spin.setMaximum(float(info.n_det))
        c = center_from_metadata(md)
        self.center_spin.setValue(info.n_det / 2.0 if c is None else c)
        self._on_angle_source()
        self._update_marker()

    def _on_slice_changed(self, *_) -> None:
        _, info = self._input_info()
        if info is not None:
            self.nslices_spin.blockSignals(True)
            self.nslices_spin.setRange(1, max(1, info.n_slices - self.slice_spin.value()))
            self.nslices_spin.blockSignals(False)
        self._update_marker()

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
    def capture(self, preview: bool = False):
        """Everything a run needs, as plain values: ``(sinograms, params, context)``.

        With ``preview``, only the first slice of the range. Raises ``ValueError`` with a message
        for the user when something is missing or inconsistent.
        """
        layer, info = self._input_info()
        if layer is None:
            raise ValueError("choose an input image layer first")
        angles = self.current_angles()
        start, stop = self.slice_range()
        if preview:
            stop = start + 1
        sinos = extract_sinograms(layer.data, info.layout, start, stop)
        center = float(self.center_spin.value())
        Geometry.create(angles, sinos.shape[-1], center)  # validates the centre now
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
            volume_slices=(stop - start) if self.volume_check.isChecked() and stop - start > 1 else 0,
            warm_iterations=self.warm_spin.value(),
        )
        if sinos.shape[0] == 1:
            sinos = sinos[0]
        det_scale = (layer.scale[-1] if info.layout != "horizontal" else layer.scale[-2])
        context = dict(
            source=layer.name,
            slices=None if info.layout == "sinogram" else (start, stop),
            layout=info.layout,
            scale=(float(det_scale), float(det_scale)),
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

    def _preview_layer(self, attr: str, data: np.ndarray, name: str, md: dict) -> Image:
        layer = getattr(self, attr)
        md = {PREVIEW_KEY: True, **md}
        if layer is None or layer not in self.viewer.layers:
            layer = self.viewer.add_image(data, name=name, metadata=md, colormap="gray")
            setattr(self, attr, layer)
        else:
            layer.data = data
            layer.metadata.update(md)
            layer.reset_contrast_limits()
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

        def done(img, seconds):
            self.last_fbp_seconds = seconds
            self._preview_layer("preview_layer", img[0], f"{ctx['source']} FBP preview", {
                "method": "fbp", "center": center, "angles": [float(a) for a in angles],
                "slices": ctx["slices"], "elapsed_s": round(seconds, 3)})
            self.status_label.setText(f"FBP preview at centre {center:g} in {seconds:.2f} s")

        return self._start_aux(fbp_preview, done, sinos[None] if sinos.ndim == 2 else sinos,
                               angles, center, device)

    def center_scan(self) -> bool:
        """A stack of FBP slices over centres around the current one (the 'Centre scan')."""
        try:
            sinos, params, ctx = self.capture(preview=True)
            centers = scan_centers(params.center, self.scan_width.value(), self.scan_step.value())
        except ValueError as exc:
            show_error(f"Cannot scan: {exc}")
            return False
        n_det = sinos.shape[-1]
        centers = centers[(centers >= 0) & (centers <= n_det)]
        angles = np.asarray(params.angles)

        def done(stack, seconds):
            self._preview_layer("scan_layer", stack, f"{ctx['source']} centre scan", {
                "method": "fbp", "centers": [float(c) for c in centers],
                "slices": ctx["slices"], "elapsed_s": round(seconds, 3)})
            step = list(self.viewer.dims.current_step)
            axis = self.viewer.dims.ndim - 3
            if axis >= 0:
                step[axis] = len(centers) // 2
                self.viewer.dims.current_step = tuple(step)
            self.status_label.setText(
                f"centre scan {centers[0]:g} to {centers[-1]:g} ({len(centers)} slices) in "
                f"{seconds:.2f} s: scroll through it, then 'Use shown'")

        return self._start_aux(center_scan, done, sinos, angles, centers, params.device)

    def use_scan_center(self) -> float | None:
        """Set the centre to the one of the scan slice the viewer shows."""
        layer = self.scan_layer
        if layer is None or layer not in self.viewer.layers:
            show_error("Run a centre scan first.")
            return None
        centers = layer.metadata.get("centers") or []
        axis = self.viewer.dims.ndim - 3
        idx = int(self.viewer.dims.current_step[axis]) if axis >= 0 else 0
        idx = min(max(idx, 0), len(centers) - 1)
        c = float(centers[idx])
        self.center_spin.setValue(c)
        self.status_label.setText(f"centre set to {c:g}")
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
        if s.status == "running" and 0 < s.iteration < s.total:
            eta = s.elapsed / s.iteration * (s.total - s.iteration)
            txt += f", ETA {eta:.0f} s"
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
        qt_window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if isinstance(qt_window, QObject):
            qt_window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:  # napari removed the dock widget: stop the run
                self.shutdown()
        return super().event(event)

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
        self._warm_thread.join(30)
        self._disconnect_viewer()
