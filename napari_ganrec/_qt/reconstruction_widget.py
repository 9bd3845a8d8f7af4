"""The reconstruction dock widget: pick an input, set angles and centre, run, watch it converge.

Assembly and wiring only. Each box is its own module (:mod:`.input_section`, :mod:`.angles_section`,
:mod:`.center_box`, :mod:`.method_section`, :mod:`.run_section`); the previews are :mod:`.previews`,
the slice marker :mod:`.slice_marker`; the run itself lives in :mod:`napari_ganrec.widget_model.run`
(Qt-free) and :class:`~napari_ganrec._qt.run_controller.RunController` (worker and live layers).
Everything the worker needs is captured here, on the main thread, when Run is pressed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from ..center import CenterEstimate
from ..io import NotLineIntegralsError
from ..widget_model.devices import available_devices
from ..widget_model.form import (
    ANGLE_SOURCES,
    DATA_CHOICES,
    prepare_input,
    run_context,
    scan_plan,
)
from ..widget_model.inputs import Binning, angles_from_metadata
from ..widget_model.run import RunParams, RunState, warm_up
from ..widget_model.warm import BackgroundWarmUp
from .angles_section import AnglesSection
from .center_box import CenterBox
from .closing import DockLifetime
from .input_section import PREVIEW_KEY, InputSection
from .method_section import MethodSection
from .previews import Previews
from .run_controller import RunController
from .run_section import RunSection
from .slice_marker import MARKER_KEY, SliceMarker

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["ReconstructionWidget", "available_devices", "ANGLE_SOURCES", "DATA_CHOICES", "MARKER_KEY",
           "PREVIEW_KEY"]

PREPROCESS_WIDGET = "Pre-processing and centre"
PLUGIN = "napari-ganrec"

#: the boxes' widgets, also reachable as attributes of the dock widget (``widget.center_spin``, ...)
_EXPOSED = {
    "input_box": ("layer_combo", "layout_combo", "slice_spin", "nslices_spin", "shape_label", "data_combo",
                  "kind_label", "bin_combo", "bin_rows_check", "hint_label", "problem_label",
                  "preprocess_button"),
    "angles_box": ("angle_source", "angle_start", "angle_stop", "angle_count", "angle_file", "angle_browse",
                   "wedge"),
    "center_box": ("center_spin", "auto_center_check", "center_label", "fbp_button", "scan_width", "scan_step",
                   "scan_button", "use_scan_button"),
    "method_box": ("method_combo", "iterations_spin", "preview_spin", "device_combo", "seed_spin",
                   "residual_check", "uncertainty_check", "volume_check", "warm_spin", "solver_options",
                   "advanced"),
    "run_box": ("run_button", "pause_button", "stop_button", "status_label", "eta_label", "loss_plot"),
}


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
        self._closed = False
        self.marker = SliceMarker(viewer)
        self._build()
        self.previews = Previews(viewer, (self.fbp_button, self.scan_button), self.status_label.setText, self)
        self._connect()
        self._refresh_layers()
        self._watcher = DockLifetime(self, self.shutdown)
        # the engine initialises in the background (see napari_ganrec.widget_model.run.warm_up)
        self._warm = BackgroundWarmUp(warm_up, self.device_combo.currentText())

    @property
    def warmed_up(self) -> bool:
        """Whether the background engine warm-up is over."""
        return self._warm.done

    # what the boxes know, under the names the widget has always had
    auto_center = property(lambda self: self.center_box.auto_center,
                           doc="The automatic centre of the current input (None until found).")
    center_origin = property(lambda self: self.center_box.center_origin,
                             doc='How the centre was chosen: "automatic", "typed" or "centre scan".')
    marker_layer = property(lambda self: self.marker.layer, doc="The slice marker's Shapes layer (or None).")
    preview_layer = property(lambda self: self.previews.preview_layer, doc="The FBP preview layer (or None).")
    scan_layer = property(lambda self: self.previews.scan_layer, doc="The centre scan layer (or None).")
    last_fbp_seconds = property(lambda self: self.previews.last_fbp_seconds,
                                doc="How long the last FBP preview took (or None).")

    # ================================================================== construction
    def _build(self) -> None:
        inner = QWidget()
        col = QVBoxLayout(inner)
        col.setContentsMargins(4, 4, 4, 4)
        self.input_box = InputSection(self.viewer)
        self.angles_box = AnglesSection()
        self.center_box = CenterBox(lambda: self.input_box.center_job(self.current_angles))
        self.method_box = MethodSection()
        self.run_box = RunSection()
        for name, attrs in _EXPOSED.items():
            box = getattr(self, name)
            col.addWidget(box)
            for attr in attrs:
                setattr(self, attr, getattr(box, attr))
        col.addStretch(1)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(360)
        self.run_box.show_buttons(self.state.status)
        self.angles_box.on_source()
        self._update_wedge()  # 'changed' is connected only later, in _connect

    def _connect(self) -> None:
        self.input_box.follow_layers(self._refresh_layers)
        for combo in (self.layer_combo, self.layout_combo, self.data_combo):
            combo.currentIndexChanged.connect(self._on_layer_changed)
        self.slice_spin.valueChanged.connect(self._on_slice_changed)
        self.nslices_spin.valueChanged.connect(self._on_slice_changed)
        self.bin_combo.currentIndexChanged.connect(self._on_binning)
        self.bin_rows_check.toggled.connect(self._on_binning)
        self.device_combo.currentIndexChanged.connect(self._update_hint)
        self.preprocess_button.clicked.connect(self.open_preprocessing)
        self.angles_box.changed.connect(self._update_wedge)
        self.fbp_button.clicked.connect(self.fbp_preview)
        self.scan_button.clicked.connect(self.center_scan)
        self.use_scan_button.clicked.connect(self.use_scan_center)
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

    # ================================================================== input
    def _refresh_layers(self, event=None) -> None:
        if self.input_box.offer_layers() or event is None:
            self._on_layer_changed()

    def input_layer(self) -> Image | None:
        """The chosen input layer (or ``None``)."""
        return self.input_box.input_layer()

    def set_input(self, layer: Image | str) -> None:
        """Choose the input layer (by layer or name)."""
        self.input_box.choose(layer)
        self._on_layer_changed()

    def layout_key(self) -> str:
        return self.input_box.layout_key()

    def data_choice(self) -> str:
        """What the input holds, as the CLI's ``--data`` (``"auto"``, ``"raw"``, ...)."""
        return self.input_box.data_choice()

    def binning(self) -> Binning:
        """The binning the next run applies."""
        return self.input_box.binning()

    def set_binning(self, factor: int, rows: bool | None = None) -> None:
        """Choose the binning (1, 2 or 4) and whether rows are binned too."""
        self.input_box.set_binning(factor, rows)

    def slice_range(self) -> tuple[int, int]:
        """The slices ``(start, stop)`` to reconstruct."""
        return self.input_box.slice_range()

    def _input_info(self):
        return self.input_box.input_info()

    def _on_layer_changed(self, *_) -> None:
        layer, info = self._input_info()
        if layer is None:
            self.shape_label.setText("no 2-D or 3-D image layer")
            self._update_marker()
            return
        self.input_box.show_shape(info, layer.ndim)
        self.angles_box.take_input(info.n_angles, angles_from_metadata(layer.metadata, info.n_angles))
        self.center_box.set_max(info.n_det)
        self.angles_box.on_source()
        self._update_marker()
        self._check_input()
        self._update_hint()
        self.center_box.request()

    def _on_slice_changed(self, *_) -> None:
        _, info = self._input_info()
        if info is not None:
            self.input_box.fit_count(info)
        self._update_marker()
        self.center_box.request()

    def _on_binning(self, *_) -> None:
        self._update_hint()
        self._update_marker()

    def _update_marker(self) -> None:
        """Draw the slice(s) to reconstruct as lines on the projections."""
        layer, info = self._input_info()
        self.marker.update(layer, info, self.slice_range())

    def _check_input(self) -> None:
        self.input_box.check(self.current_angles)

    def _update_hint(self, *_) -> None:
        self.input_box.update_hint(self.device_combo.currentText())

    def open_preprocessing(self):
        """Open the pre-processing widget (through the Plugins menu's own call)."""
        return self.viewer.window.add_plugin_dock_widget(PLUGIN, PREPROCESS_WIDGET)

    # ================================================================== angles
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
        return self.angles_box.angles(layer.name, layer.metadata, info.n_angles)

    def _update_wedge(self, *_) -> None:
        try:
            a = self.current_angles()
        except ValueError as exc:
            self.angles_box.show_angles(None, str(exc))
            return
        self.angles_box.show_angles(a)
        self.center_box.request()

    # ================================================================== centre
    def set_center(self, value: float) -> None:
        """Type a centre (detector pixels of the input): automatic is switched off."""
        self.center_box.set_center(value)

    def wait_auto_center(self, timeout: float = 120.0) -> CenterEstimate:
        """The automatic centre of the current input, computed here if not found yet (blocks)."""
        return self.center_box.wait()

    def current_center(self) -> float:
        """The centre the run uses, in detector pixels of the input (before binning).

        With 'automatic' on, the automatic centre (computed now if not found yet).
        """
        return self.center_box.current()

    # ================================================================== method
    def set_method(self, method: str) -> None:
        """Choose the method by engine name (``"ganrec"``, ``"tv"``, ``"sirt"``, ``"fbp"``)."""
        self.method_box.set_method(method)

    # ================================================================== capture and run
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

        def read(r0: int, r1: int):
            try:
                return self.input_box.line_integrals(layer, info, r0, r1, angles)
            except NotLineIntegralsError as exc:
                self.input_box.show_problem(f"Cannot reconstruct {layer.name!r}: {exc}")
                raise

        p = prepare_input(read, self.current_center, angles=angles, binning=binning,
                          slices=self.slice_range(), n_slices=info.n_slices, preview=preview)
        n_out = p.sinograms.shape[0]
        params = RunParams(angles=tuple(angles), center=p.center_binned, **self.method_box.run_values(n_out))
        context = run_context(
            source=layer.name, layer_scale=tuple(layer.scale), info=info, binning=binning,
            center=p.center, center_binned=p.center_binned, center_method=self.center_box.center_method(),
            kind=p.kind.kind, kind_reason=p.kind.reason, rows_read=p.rows_read, slices=p.slices)
        return (p.sinograms[0] if n_out == 1 else p.sinograms), params, context

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
        self.input_box.show_problem("")
        self._update_hint()
        return self.controller.start(sinos, params, **context)

    # ================================================================== previews
    def fbp_preview(self) -> bool:
        """FBP of the current slice at the current centre, in a thread (the 'FBP preview')."""
        try:
            sinos, params, ctx = self.capture(preview=True)
        except ValueError as exc:
            show_error(f"Cannot preview: {exc}")
            return False
        return self.previews.fbp(sinos, params, ctx)

    def center_scan(self) -> bool:
        """A stack of FBP slices over centres around the current one (the 'Centre scan').

        The centres are in detector pixels of the input; the scan runs on the binned slice.
        """
        try:
            sinos, params, ctx = self.capture(preview=True)
            _, info = self._input_info()
            centers, binned = scan_plan(ctx["extra"]["center"], self.scan_width.value(), self.scan_step.value(),
                                        info.n_det, self.binning())
        except ValueError as exc:
            show_error(f"Cannot scan: {exc}")
            return False
        return self.previews.scan(sinos, params, ctx, centers, binned)

    def use_scan_center(self) -> float | None:
        """Set the centre to the one of the scan slice the viewer shows ('automatic' goes off)."""
        c = self.previews.shown_scan_center()
        if c is None:
            return None
        self.center_box.use_center(c, "centre scan")
        self.status_label.setText(f"centre set to {c:g} (from the centre scan)")
        return c

    # ================================================================== state
    def _on_status(self, status: str) -> None:
        self.run_box.show_buttons(self.state.status)
        self._on_progress()

    def _on_progress(self, *_) -> None:
        self.run_box.show_progress(self.state)

    def _on_run_ended(self, status: str) -> None:
        self.loss_plot.flush()
        self._on_progress()

    # ================================================================== closing
    def shutdown(self) -> None:
        """Stop any run and preview and wait for their threads (closing the widget or viewer)."""
        if self._closed:
            return
        self._closed = True
        self.controller.shutdown()
        self.previews.shutdown()
        self.center_box.shutdown()
        self._warm.join(30)
        self.input_box.unfollow_layers()
        self._watcher.release()

