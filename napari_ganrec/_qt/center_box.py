"""The 'Centre of rotation' box: the centre the run uses, found automatically in the background or typed.

The automatic centre is computed by a thread worker, one at a time (the newest request runs next),
from the plain inputs the dock widget captures (``inputs()``); the box only shows and applies it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from napari.qt.threading import create_worker
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QLabel, QPushButton

from ..center import CenterEstimate
from ..io import NotLineIntegralsError
from .form import dspin, hrow

#: ``inputs()`` returns ``(key, compute, row)``: what identifies the input, the centre's computation, its row
AutoInputs = Callable[[], "tuple[tuple, Callable[[], CenterEstimate], int] | None"]


class CenterBox(QGroupBox):
    """The centre box: the centre in input pixels, 'automatic', FBP preview and centre scan buttons.

    Parameters
    ----------
    inputs : callable
        ``inputs() -> (key, compute, row)`` of the current input, or ``None`` without one (no layer
        or no angles yet). ``compute()`` runs in a worker thread and must read no widget.

    Attributes
    ----------
    auto_center : CenterEstimate or None
        The automatic centre of the current input (``None`` until found).
    center_origin : str
        How the centre in the box was chosen: ``"automatic"``, ``"typed"`` or ``"centre scan"``.
    """

    def __init__(self, inputs: AutoInputs, parent=None):
        super().__init__("Centre of rotation (pixels)", parent)
        self._inputs = inputs
        self.auto_center: CenterEstimate | None = None
        self.center_origin = "automatic"
        self.closed = False
        self._auto_key = None
        self._auto_row = 0
        self._worker = None
        self._pending = None
        self._running_key = None
        self._done = threading.Event()
        self._done.set()
        self._build()
        self.center_spin.valueChanged.connect(self._on_typed)
        self.auto_center_check.toggled.connect(self._on_auto)

    def _build(self) -> None:
        form = QFormLayout(self)
        self.center_spin = dspin(0, 100000, 32.0, 0.5, 2, "Detector coordinate of the axis (pixels of "
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
        self.scan_width = dspin(0, 1000, 4.0, 0.5, 2, "Scan centre +- this many pixels")
        self.scan_step = dspin(0.05, 100, 1.0, 0.25, 2, "Centre scan step (pixels)")
        self.scan_button = QPushButton("Centre scan")
        self.scan_button.setToolTip("A stack of FBP slices over a range of centres")
        self.use_scan_button = QPushButton("Use shown")
        self.use_scan_button.setToolTip("Take the centre of the scan slice shown in the viewer")
        form.addRow("centre", hrow(self.center_spin, self.auto_center_check, self.fbp_button))
        form.addRow("", self.center_label)
        form.addRow("scan", hrow("+-", self.scan_width, "step", self.scan_step))
        form.addRow("", hrow(self.scan_button, self.use_scan_button))

    # ------------------------------------------------------------------ the centre in the box
    def set_max(self, n_det: int) -> None:
        """Clamp the centre to the detector (a clamp is no centre the user typed)."""
        self.center_spin.blockSignals(True)
        self.center_spin.setMaximum(float(n_det))
        self.center_spin.blockSignals(False)

    def set_center(self, value: float) -> None:
        """Type a centre (detector pixels of the input): automatic is switched off."""
        self.center_spin.setValue(float(value))
        self._on_typed()

    def use_center(self, value: float, origin: str) -> None:
        """Put ``value`` in the box as chosen by ``origin`` (``"centre scan"``, ...): automatic goes off."""
        self._set_automatic(False)
        self._show(value, origin)
        self.apply()

    def current(self) -> float:
        """The centre the run uses: with 'automatic' on, the automatic one (computed now if not found yet)."""
        if self.auto_center_check.isChecked():
            return self.wait().center
        return float(self.center_spin.value())

    def center_method(self) -> str:
        """How the centre was chosen: the automatic method's name, ``"typed"`` or ``"centre scan"``."""
        if self.center_origin == "automatic" and self.auto_center is not None:
            return self.auto_center.method
        return self.center_origin

    def _show(self, value: float, origin: str) -> None:
        self.center_spin.blockSignals(True)
        self.center_spin.setValue(float(value))
        self.center_spin.blockSignals(False)
        self.center_origin = origin

    def _set_automatic(self, on: bool) -> None:
        self.auto_center_check.blockSignals(True)
        self.auto_center_check.setChecked(on)
        self.auto_center_check.blockSignals(False)

    def _on_typed(self, *_) -> None:
        """The user typed a centre: it is used as typed."""
        self.center_origin = "typed"
        self._set_automatic(False)
        self.apply()

    def _on_auto(self, on: bool) -> None:
        if on:
            self.request()
        else:
            self.apply()

    def apply(self) -> None:
        """Show the automatic centre, and put it in the box when 'automatic' is on."""
        est = self.auto_center
        if est is None:
            return
        if self.auto_center_check.isChecked():
            self._show(est.center, "automatic")
        self.center_label.setText(f"automatic: {est.center:.2f} px by {est.label}, row {self._auto_row}"
                                  + ("" if self.auto_center_check.isChecked() else " (not used)"))

    # ------------------------------------------------------------------ the automatic centre
    def request(self) -> None:
        """Find the automatic centre of the current input in the background (if not known)."""
        inputs = self._inputs()
        if inputs is None:
            self.center_label.setText("")
            return
        key, compute, row = inputs
        if key == self._auto_key and self.auto_center is not None:
            self.apply()
            return
        self.auto_center, self._auto_key = None, None
        if self._worker is not None and key == self._running_key:
            self._pending = None  # the one running is the one wanted
            return
        if self._worker is not None:  # one at a time: the newest request runs next
            self._pending = (key, compute, row)
            return
        self._start(key, compute, row)

    def wait(self) -> CenterEstimate:
        """The automatic centre of the current input, computed here if not found yet (blocks)."""
        inputs = self._inputs()
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
            self.apply()
        return self.auto_center

    def _start(self, key, compute, row) -> None:
        self.center_label.setText(f"finding the automatic centre on row {row}...")
        done = self._done = threading.Event()

        def run():
            try:
                return key, compute(), row
            except ValueError as exc:  # NotLineIntegralsError included
                return key, exc, row
            finally:
                done.set()

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_found)
        worker.errored.connect(lambda exc: self.center_label.setText(f"automatic centre failed: {exc}"))
        worker.finished.connect(self._on_worker_finished)
        self._worker = worker
        self._running_key = key
        worker.start()

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._running_key = None
        pending, self._pending = self._pending, None
        if pending is not None and not self.closed:
            self._start(*pending)

    def _on_found(self, result) -> None:
        key, est, row = result
        if self.closed or self._pending is not None:
            return
        inputs = self._inputs()
        if inputs is None or inputs[0] != key:
            return  # the input changed meanwhile; a newer request is on its way
        if isinstance(est, Exception):
            self.auto_center, self._auto_key = None, None
            self.center_label.setText(f"no automatic centre: {est}; type one")
            return
        self.auto_center, self._auto_key = est, key
        self._auto_row = row
        self.apply()

    def shutdown(self, timeout: float = 60.0) -> None:
        """Drop the pending request and wait for the running one (closing the widget)."""
        self.closed = True
        self._pending = None
        if self._worker is not None:
            self._done.wait(timeout)
