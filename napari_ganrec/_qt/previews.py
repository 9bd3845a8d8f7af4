"""The quick looks before a run: an FBP preview of the slice, a centre scan, and their preview layers.

One preview at a time runs in a thread worker; its result becomes (or refreshes) a preview layer,
framed on the canvas, on the main thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject

from ..center import center_scan
from ..widget_model.inputs import fbp_preview
from .framing import frame_layer
from .input_section import PREVIEW_KEY


class Previews(QObject):
    """Runs the FBP preview and the centre scan, and keeps their layers.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the preview layers go.
    buttons : sequence of QPushButton
        Disabled while a preview runs.
    say : callable
        Shows a line of status text.

    Attributes
    ----------
    preview_layer, scan_layer : napari.layers.Image or None
        The FBP preview and the centre scan stack.
    last_fbp_seconds : float or None
        How long the last FBP preview took.
    """

    def __init__(self, viewer, buttons, say: Callable[[str], None], parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.buttons = tuple(buttons)
        self.say = say
        self.preview_layer: Image | None = None
        self.scan_layer: Image | None = None
        self.last_fbp_seconds: float | None = None
        self.closed = False
        self._worker = None
        self._cancel = threading.Event()
        self._done = threading.Event()

    def fbp(self, sinos: np.ndarray, params, ctx: dict) -> bool:
        """FBP of the captured slice at the captured centre."""
        angles, center = np.asarray(params.angles), params.center
        extra = ctx["extra"]

        def done(img, seconds):
            self.last_fbp_seconds = seconds
            self._show("preview_layer", img[0], f"{ctx['source']} FBP preview", {
                "method": "fbp", "angles": [float(a) for a in angles], "slices": ctx["slices"],
                "elapsed_s": round(seconds, 3), **extra}, scale=ctx["scale"])
            self.say(f"FBP preview at centre {extra['center']:.2f} px in {seconds:.2f} s")

        return self._start(fbp_preview, done, sinos[None] if sinos.ndim == 2 else sinos,
                           angles, center, params.device)

    def scan(self, sinos: np.ndarray, params, ctx: dict, centers: np.ndarray, binned: np.ndarray) -> bool:
        """A stack of FBP slices at ``binned`` centres (``centers`` in input pixels, for the user)."""
        angles = np.asarray(params.angles)
        sino = sinos if sinos.ndim == 2 else sinos[0]

        def done(stack, seconds):
            self._show("scan_layer", stack, f"{ctx['source']} centre scan", {
                "method": "fbp", "centers": [float(c) for c in centers], "slices": ctx["slices"],
                "binning": ctx["extra"]["binning"], "elapsed_s": round(seconds, 3)},
                scale=(1.0, *ctx["scale"]))
            step = list(self.viewer.dims.current_step)
            axis = self.viewer.dims.ndim - 3
            if axis >= 0:
                step[axis] = len(centers) // 2
                self.viewer.dims.current_step = tuple(step)
            self.say(f"centre scan {centers[0]:g} to {centers[-1]:g} ({len(centers)} slices) in "
                     f"{seconds:.2f} s: scroll through it, then 'Use shown'")

        return self._start(center_scan, done, sino, angles, binned)

    def shown_scan_center(self) -> float | None:
        """The centre of the scan slice the viewer shows (``None``, and said, without a scan)."""
        layer = self.scan_layer
        if layer is None or layer not in self.viewer.layers:
            show_error("Run a centre scan first.")
            return None
        centers = layer.metadata.get("centers") or []
        axis = self.viewer.dims.ndim - 3
        idx = int(self.viewer.dims.current_step[axis]) if axis >= 0 else 0
        idx = min(max(idx, 0), len(centers) - 1)
        return float(centers[idx])

    def _start(self, func, on_done, *args) -> bool:
        if self._worker is not None:
            show_error("A preview is still being computed.")
            return False
        cancelled = self._cancel = threading.Event()
        done = self._done = threading.Event()

        def guarded():
            try:
                return None if cancelled.is_set() else func(*args)
            finally:
                done.set()

        worker = create_worker(guarded, _start_thread=False, _ignore_errors=True)
        t0 = time.perf_counter()

        def returned(result):
            if self.closed or result is None:
                return
            on_done(result, time.perf_counter() - t0)

        def errored(exc):
            show_error(f"Preview failed: {exc}")

        def finished():
            self._worker = None
            self._enable(True)

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self._worker = worker
        self._enable(False)
        worker.start()
        return True

    def _enable(self, on: bool) -> None:
        for b in self.buttons:
            b.setEnabled(on)

    def _show(self, attr: str, data: np.ndarray, name: str, md: dict,
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

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel a preview not yet started; wait for one running (seconds at most)."""
        self.closed = True
        self._cancel.set()
        if self._worker is not None and self._worker.is_running:
            self._done.wait(timeout)
        self._worker = None
