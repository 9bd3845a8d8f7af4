"""Worker wiring of one reconstruction run: thread worker, live layers, progress bar.

The controller owns at most one :func:`napari_ganrec.widget_model.run.run_reconstruction` worker at a
time. Everything it does to napari (layers, progress, notifications) happens on the main thread,
in the worker's ``yielded``/``returned``/``errored``/``finished`` handlers; the worker gets only
plain parameters and an array captured before it starts.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, QTimer, Signal

from ..widget_model.run import (
    METHOD_LABELS,
    EngineError,
    RunParams,
    RunState,
    RunUpdate,
    run_metadata,
    run_reconstruction,
)
from .framing import framing_steps

RESULT_KEY = "napari_ganrec_result"


def live_layer_name(source: str, slices: tuple[int, int] | None, method: str) -> str:
    """``"<input> slice 12 GANrec"`` (or ``slices 10-19``; no slice for a single sinogram)."""
    label = METHOD_LABELS.get(method, method)
    if slices is None:
        return f"{source} {label}"
    a, b = slices
    where = f"slice {a}" if b - a == 1 else f"slices {a}-{b - 1}"
    return f"{source} {where} {label}"


class RunController(QObject):
    """Runs one reconstruction at a time and streams it into live layers.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the live layers go.
    state : RunState, optional
        The evented state to fold updates into (one is made if omitted).

    Attributes
    ----------
    state : RunState
    image_layer, residual_layer : napari.layers.Image or None
        The current (or last) run's live layers.
    preview_latencies : list of float
        Seconds from an engine step to the canvas draw that first showed its image.
    iterate : callable or None
        Replaces :func:`napari_ganrec.iter_reconstruct` (tests).
    """

    run_started = Signal()
    run_ended = Signal(str)  # final status: finished | stopped | failed

    def __init__(self, viewer, state: RunState | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.state = state if state is not None else RunState()
        self.image_layer = None
        self.residual_layer = None
        self.preview_latencies: list[float] = []
        self.iterate: Callable | None = None
        self._worker = None
        self._starting = False
        self._stages: list = []
        self._nested_cpu = 0.0
        self._done = threading.Event()
        self._done.set()
        self._pbar = None
        self._pbar_n = 0
        self._pbar_at = 0.0
        #: seconds between two moves of napari's progress bar
        self.progress_interval = 0.25
        #: milliseconds of event loop between the stages of a start
        self.stage_gap_ms = 20
        #: keep the objects that exist when a run starts out of garbage collections during it
        self.freeze_gc = True
        self._frozen = False
        self._params: RunParams | None = None
        self._context: dict = {}
        self._await_paint: float | None = None
        self._error: str | None = None
        self._draw_emitter = None
        self._pending: RunUpdate | None = None
        self._revealed = False
        #: seconds between two refreshes of the live layers (each costs a canvas redraw, which
        #: with software OpenGL takes tens of milliseconds): at most 10 pictures a second
        self.render_interval = 0.1
        self._last_render = 0.0
        #: seconds to hold a layer refresh back (see LossPlot.defer)
        self.defer = lambda: 0.0
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render)
        #: (handler, main-thread CPU seconds) of each piece of main-thread work a run makes (a
        #: start stage, an update, a refresh of the layers, a framing step): the work done on the
        #: main thread per update, which a busy machine does not inflate (time.thread_time)
        self.main_thread_work: list[tuple[str, float]] = []
        self._connect_draw()

    # ------------------------------------------------------------------ public
    @property
    def busy(self) -> bool:
        """Whether a run is active (starting, or its worker not yet finished)."""
        return self._starting or self._worker is not None

    def start(
        self,
        sinograms: np.ndarray,
        params: RunParams,
        *,
        source: str,
        slices: tuple[int, int] | None,
        layout: str,
        scale: tuple[float, float] = (1.0, 1.0),
        slice_scale: float = 1.0,
        extra: dict | None = None,
    ) -> bool:
        """Start a run; returns ``False`` (and says why) if one is already going.

        ``sinograms`` must be an array the caller gives away (the worker reads it). ``scale`` is
        the pixel size of the result's rows and columns, ``slice_scale`` that of its slices (the
        row binning); ``extra`` goes into the result layer's metadata (binning, data kind, ...).
        """
        if self.busy:
            show_info("A reconstruction is already running: stop it before starting another.")
            return False
        self._params = params
        self._context = dict(source=source, slices=slices, layout=layout, scale=tuple(scale),
                             slice_scale=float(slice_scale), extra=dict(extra or {}),
                             started=datetime.now(timezone.utc), name=live_layer_name(
                                 source, slices, params.method))
        self._error = None
        self.image_layer = None
        self.residual_layer = None
        self.uncertainty_layer = None
        self._starting = True
        self._revealed = False
        if self.freeze_gc and not self._frozen:
            # A full (generation 2) collection walks every object of the session -- napari, Qt
            # wrappers, torch -- and stalls every thread for up to half a second (measured: 508 ms
            # in the test suite). The run allocates steadily and would trigger such collections;
            # frozen objects are skipped, so collections during the run only see the run's own
            # objects. unfreeze() at the end hands them back to the collector.
            gc.freeze()
            self._frozen = True
        self.state.reset(params.total)
        self.main_thread_work = []
        self.run_started.emit()
        # Each stage is one slice of main-thread work (adding a napari layer costs tens of
        # milliseconds); the event loop runs in between, so the viewer keeps answering.
        shape = tuple(np.shape(sinograms))
        self._stages = [
            lambda: self._add_image_layer(shape),
            lambda: self._add_residual_layer(shape),
            lambda: self._add_uncertainty_layer(shape),
            lambda: self._start_worker(sinograms, params),
        ]
        self._next_stage()
        return True

    def _timed(self, name: str, fn: Callable, *args):
        """Call ``fn`` and note the main thread's CPU time it took (nested timed calls excluded)."""
        t0 = time.thread_time()
        outer, self._nested_cpu = getattr(self, "_nested_cpu", 0.0), 0.0
        try:
            return fn(*args)
        finally:
            spent = time.thread_time() - t0
            self.main_thread_work.append((name, spent - self._nested_cpu))
            self._nested_cpu = outer + spent

    def _next_stage(self) -> None:
        self._timed("start stage", self._next_stage_work)

    def _next_stage_work(self) -> None:
        if not self._starting:
            return
        if self.state.status == "stopping":  # stopped before the worker started
            self._stages = []
            self._finish("stopped")
            return
        stage = self._stages.pop(0)
        stage()
        if self._stages:
            # a real timer, not a posted event (which Qt runs before timers and paints)
            QTimer.singleShot(self.stage_gap_ms, self._next_stage)

    def _start_worker(self, sinograms, params: RunParams) -> None:
        self._pbar_n, self._pbar_at = 0, time.perf_counter()
        self._pbar = progress(total=params.total,
                              desc=f"{METHOD_LABELS[params.method]}: {self._context['name']}")
        kwargs = {} if self.iterate is None else {"iterate": self.iterate}
        worker = create_worker(run_reconstruction, sinograms, params, _start_thread=False,
                               _ignore_errors=True, **kwargs)
        self._done = threading.Event()
        # set from the worker thread itself, so shutdown() can wait without an event loop
        worker.finished.connect(self._done.set, Qt.ConnectionType.DirectConnection)
        worker.yielded.connect(self._on_update)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.paused.connect(self._on_paused)
        worker.resumed.connect(self._on_resumed)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._starting = False
        worker.start()

    def pause(self) -> None:
        """Ask the worker to pause at its next update."""
        if self._worker is not None and self.state.status == "running":
            self._worker.pause()

    def resume(self) -> None:
        """Resume a paused worker."""
        if self._worker is not None and self.state.status == "paused":
            self._worker.resume()

    def toggle_pause(self) -> None:
        if self.state.status == "paused":
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """Ask the worker to stop at its next update; the live layer keeps the last image."""
        if self._starting:
            self.state.status = "stopping"  # the next start stage ends the run
            return
        if self._worker is None:
            return
        self._worker.quit()
        if self.state.status in ("running", "paused"):
            self.state.status = "stopping"
        if self._worker.is_paused:
            self._worker.resume()  # let it reach the abort check

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop the worker and wait (without an event loop) until its thread is done.

        For closing the widget or the viewer: afterwards no worker signal reaches this object.
        Returns whether the thread finished within ``timeout`` seconds.
        """
        self._disconnect_draw()
        if self._starting:
            self._starting = False
            self._stages = []
            self._finish("stopped")
            return True
        worker = self._worker
        if worker is None:
            return True
        for sig in (worker.yielded, worker.returned, worker.errored, worker.aborted,
                    worker.paused, worker.resumed):
            try:
                sig.disconnect()
            except (TypeError, RuntimeError):
                pass
        try:
            worker.finished.disconnect(self._on_finished)
        except (TypeError, RuntimeError):
            pass
        worker.quit()
        if worker.is_paused:
            worker.resume()
        ok = True
        if worker.is_running or getattr(worker, "_paused", False):
            ok = self._done.wait(timeout)
        self._finish("stopped")
        return ok

    # ------------------------------------------------------------------ worker signals
    def _on_update(self, update: RunUpdate) -> None:
        self._timed("update", self._on_update_work, update)

    def _on_update_work(self, update: RunUpdate) -> None:
        if self._worker is None:
            return
        self.state.apply(update)
        if update.image is not None:
            # Refreshing layers is the expensive part; when updates queue up (the main thread
            # busy elsewhere), only the newest image is drawn, from the event loop.
            self._pending = update
            if not self._render_timer.isActive():
                self._render_timer.start(self._render_delay_ms())
        self._update_progress(update.iteration, update.iteration >= update.total)

    def _render_delay_ms(self) -> int:
        now = time.perf_counter()
        wait = max(self._last_render + self.render_interval - now, self.defer())
        return max(0, int(wait * 1000))

    def _render(self) -> None:
        self._timed("render", self._render_work)

    def _render_work(self) -> None:
        if self._pending is not None and self.defer() > 0 and self._worker is not None:
            self._render_timer.start(self._render_delay_ms() + 1)
            return
        update, self._pending = self._pending, None
        if update is not None:
            self._last_render = time.perf_counter()
            self._show_image(update)

    def _update_progress(self, iteration: int, force: bool = False) -> None:
        """Move napari's progress bar, at most a few times a second.

        napari's progress bar processes pending events when it moves, which may run the next
        update's handler inside this one: so it comes last, after the state is consistent.
        """
        pbar = self._pbar
        now = time.perf_counter()
        if pbar is None or iteration <= self._pbar_n:
            return
        if not force and now - self._pbar_at < self.progress_interval:
            return
        delta = iteration - self._pbar_n
        self._pbar_n, self._pbar_at = iteration, now
        pbar.update(delta)

    def _on_returned(self, summary) -> None:
        self._context["device"] = getattr(summary, "device", None)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, (ValueError, EngineError)):
            self._error = str(exc)
        else:
            self._error = f"{type(exc).__name__}: {exc}"
        show_error(f"Reconstruction failed: {self._error}")

    def _on_aborted(self) -> None:
        pass

    def _on_paused(self) -> None:
        if self.state.status == "running":
            self.state.status = "paused"

    def _on_resumed(self) -> None:
        if self.state.status == "paused":
            self.state.status = "running"

    def _on_finished(self) -> None:
        worker = self._worker
        if worker is None:
            return
        if self._error is not None:
            status = "failed"
        elif worker.abort_requested:
            status = "stopped"
        else:
            status = "finished"
        self._finish(status)

    # ------------------------------------------------------------------ helpers
    def _finish(self, status: str) -> None:
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        self._starting = False
        self._render_timer.stop()
        self._render()  # the last image the worker sent
        worker, self._worker = self._worker, None
        if worker is not None:
            gen = getattr(worker, "_gen", None)
            if gen is not None:
                try:
                    gen.close()  # frees the solver now rather than at garbage collection
                except ValueError:  # still executing (shutdown timed out)
                    pass
        if self._pbar is not None:
            pbar, self._pbar = self._pbar, None
            pbar.close()
        self.state.message = self._error or ""
        if self.state.n_images == 0:  # nothing was shown: drop the empty placeholders
            for layer in (self.image_layer, self.residual_layer, self.uncertainty_layer):
                if layer is not None and layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            self.image_layer = self.residual_layer = self.uncertainty_layer = None
        self.state.status = status
        self._update_metadata(status)
        self.run_ended.emit(status)

    def _metadata(self, status: str) -> dict:
        ctx = self._context
        md = run_metadata(
            self._params, source=ctx["source"], slices=ctx["slices"], layout=ctx["layout"],
            iteration=self.state.image_iteration or self.state.iteration,
            elapsed=self.state.elapsed, status=status, started=ctx["started"], extra=ctx.get("extra"))
        if ctx.get("device"):
            md["device"] = ctx["device"]
        if self._error:
            md["error"] = self._error
        md[RESULT_KEY] = True
        return md

    def _update_metadata(self, status: str) -> None:
        if self._params is None:
            return
        for layer, kind in ((self.image_layer, "image"), (self.residual_layer, "residual"),
                            (self.uncertainty_layer, "uncertainty")):
            if layer is not None:
                md = self._metadata(status)
                md["content"] = kind
                layer.metadata.update(md)

    def _add_image_layer(self, sino_shape: tuple[int, ...]) -> None:
        """Add the run's live layer before the worker starts.

        Adding a napari layer is the costliest thing the main thread does for a run (Qt controls,
        a vispy visual); doing it at the click keeps it out of the stream of updates.
        """
        n_det = int(sino_shape[-1])
        img_shape = (n_det, n_det) if len(sino_shape) == 2 else (int(sino_shape[0]), n_det, n_det)
        md = self._metadata("running")
        scale = (self._context["slice_scale"],) * (len(img_shape) - 2) + tuple(self._context["scale"])
        self.image_layer = self.viewer.add_image(
            np.zeros(img_shape, np.float32), name=self._context["name"],
            metadata={**md, "content": "image"}, colormap="gray", scale=scale,
            contrast_limits=(0.0, 1.0), visible=False)

    def _add_residual_layer(self, sino_shape: tuple[int, ...]) -> None:
        """The second live layer (model sinogram minus data), if asked for."""
        if not self._params.residual:
            return
        md = self._metadata("running")
        self.residual_layer = self.viewer.add_image(
            np.zeros(sino_shape, np.float32), name=f"{self._context['name']} residual",
            metadata={**md, "content": "residual"}, colormap="PiYG", contrast_limits=(-1.0, 1.0),
            visible=False)

    def _add_uncertainty_layer(self, sino_shape: tuple[int, ...]) -> None:
        """The optional uncertainty layer: where the last iterates of the final stage disagree (a stage
        that averages iterates: reweighted TV, GANrec)."""
        if not (self._params.uncertainty and hasattr(self._params.plan.stages[-1].config, "average_last")):
            return
        n_det = int(sino_shape[-1])
        img_shape = (n_det, n_det) if len(sino_shape) == 2 else (int(sino_shape[0]), n_det, n_det)
        md = self._metadata("running")
        scale = (self._context["slice_scale"],) * (len(img_shape) - 2) + tuple(self._context["scale"])
        self.uncertainty_layer = self.viewer.add_image(
            np.zeros(img_shape, np.float32), name=f"{self._context['name']} uncertainty",
            metadata={**md, "content": "uncertainty"}, colormap="magma", scale=scale,
            contrast_limits=(0.0, 1.0), blending="additive", visible=False)

    def _show_image(self, update: RunUpdate) -> None:
        layer = self.image_layer
        if layer is None or layer not in self.viewer.layers:
            return  # the user removed it: the run goes on without a picture
        layer.data = np.asarray(update.image)
        layer.reset_contrast_limits()
        reveal = not self._revealed
        if reveal:
            # added hidden (so adding it does not also draw it), shown with its first picture,
            # alone and framed: the canvas leaves the projection stack's axes for the result's
            self._revealed = True
            layer.visible = True
            self._frame_later(framing_steps(self.viewer, layer,
                                            keep=(self.residual_layer, self.uncertainty_layer)))
        layer.metadata["iterations"] = int(update.image_iteration)
        layer.metadata["elapsed_s"] = round(float(update.elapsed), 3)
        res = self.residual_layer
        if update.residual is not None and res is not None and res in self.viewer.layers:
            r = np.asarray(update.residual)
            lim = float(np.max(np.abs(r))) or 1.0
            res.data = r
            res.contrast_limits = (-lim, lim)
            res.metadata["iterations"] = int(update.image_iteration)
            if reveal:
                res.visible = True
        unc = self.uncertainty_layer
        if update.uncertainty is not None and unc is not None and unc in self.viewer.layers:
            u = np.asarray(update.uncertainty)
            unc.data = u
            unc.contrast_limits = (0.0, float(np.max(u)) or 1.0)
            unc.metadata["iterations"] = int(update.image_iteration)
            if reveal:
                unc.visible = True
        self._await_paint = update.produced_at

    def _frame_later(self, steps: list) -> None:
        """Run the framing steps one per event-loop turn (each costs a redraw of the layer list
        or canvas), so that the viewer keeps answering in between."""
        if not steps:
            return
        step = steps.pop(0)

        def run():
            image = self.image_layer
            if image is not None and image in self.viewer.layers:
                self._timed("framing", step)
                self._frame_later(steps)

        QTimer.singleShot(self.stage_gap_ms, run)

    # latency from an engine step to the canvas draw that shows it
    def _connect_draw(self) -> None:
        # napari hands plugin widgets a PublicOnlyProxy of the viewer; the canvas's draw event
        # (for the latency figure only) is private, so it is read from the viewer behind it
        viewer = getattr(self.viewer, "__wrapped__", self.viewer)
        try:
            emitter = viewer.window._qt_viewer.canvas._scene_canvas.events.draw
        except AttributeError:
            return
        emitter.connect(self._on_draw)
        self._draw_emitter = emitter

    def _disconnect_draw(self) -> None:
        if self._draw_emitter is not None:
            try:
                self._draw_emitter.disconnect(self._on_draw)
            except (RuntimeError, ValueError, TypeError):
                pass
            self._draw_emitter = None

    def _on_draw(self, event=None) -> None:
        if self._await_paint is not None:
            self.preview_latencies.append(time.perf_counter() - self._await_paint)
            self._await_paint = None
