"""The life of one reconstruction run: start in stages, pause, resume, stop, finish.

The worker itself is made and taken apart in :mod:`.run_worker`, its layers are :mod:`.live_layers`,
its progress bar and paint latency :mod:`.run_progress`. The controller owns at most one
:func:`napari_ganrec.widget_model.run.run_reconstruction` worker at a time. Everything it does to
napari (layers, progress, notifications) happens on the main thread, in the worker's
``yielded``/``returned``/``errored``/``finished`` handlers; the worker gets only plain parameters
and an array captured before it starts.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal

from ..widget_model.live import RESULT_KEY, error_text, final_status, live_layer_name
from ..widget_model.run import METHOD_LABELS, RunParams, RunState, RunUpdate, run_metadata
from .live_layers import LiveLayers
from .run_progress import PaintLatency, ThrottledProgress
from .run_worker import Handlers, close_generator, detach_and_stop, make_run_worker

__all__ = ["RunController", "live_layer_name", "RESULT_KEY"]


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
        #: milliseconds of event loop between the stages of a start
        self.stage_gap_ms = 20
        self.live = LiveLayers(viewer, self._timed, lambda: self.stage_gap_ms)
        self.iterate: Callable | None = None
        self._worker = None
        self._starting = False
        self._stages: list = []
        self._nested_cpu = 0.0
        self._done = threading.Event()
        self._done.set()
        self._progress = ThrottledProgress(interval=0.25)
        #: keep the objects that exist when a run starts out of garbage collections during it
        self.freeze_gc = True
        self._frozen = False
        self._params: RunParams | None = None
        self._context: dict = {}
        self._error: str | None = None
        self._pending: RunUpdate | None = None
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
        self._latency = PaintLatency(viewer)

    # ------------------------------------------------------------------ what the run shows
    image_layer = property(lambda self: self.live.image, doc="The run's live image layer (or None).")
    residual_layer = property(lambda self: self.live.residual, doc="Its residual layer (or None).")
    uncertainty_layer = property(lambda self: self.live.uncertainty, doc="Its uncertainty layer (or None).")
    preview_latencies = property(lambda self: self._latency.latencies,
                                 doc="Seconds from an engine step to the canvas draw that first showed it.")
    _pbar = property(lambda self: self._progress.bar, doc="napari's progress bar of the run (or None).")

    @property
    def progress_interval(self) -> float:
        """Seconds between two moves of napari's progress bar."""
        return self._progress.interval

    @progress_interval.setter
    def progress_interval(self, value: float) -> None:
        self._progress.interval = float(value)

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
        params = params.with_automatic_options(sinograms)  # as the CLI: chosen once, recorded
        self._params = params
        self._context = dict(source=source, slices=slices, layout=layout, scale=tuple(scale),
                             slice_scale=float(slice_scale), extra=dict(extra or {}),
                             started=datetime.now(timezone.utc), name=live_layer_name(
                                 source, slices, params.method))
        self._error = None
        self.live.reset()
        self._starting = True
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
        self._progress.open(params.total, f"{METHOD_LABELS[params.method]}: {self._context['name']}")
        handlers = Handlers(yielded=self._on_update, returned=self._on_returned, errored=self._on_error,
                            aborted=self._on_aborted, paused=self._on_paused, resumed=self._on_resumed,
                            finished=self._on_finished)
        worker, self._done = make_run_worker(sinograms, params, handlers, self.iterate)
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
        self._latency.disconnect()
        if self._starting:
            self._starting = False
            self._stages = []
            self._finish("stopped")
            return True
        worker = self._worker
        if worker is None:
            return True
        ok = detach_and_stop(worker, self._done, self._on_finished, timeout)
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
        # the bar last: moving it processes pending events (see ThrottledProgress)
        self._progress.move(update.iteration, update.iteration >= update.total)

    def _render_delay_ms(self) -> int:
        now = time.perf_counter()
        wait = max(self._last_render + self.render_interval - now, self.defer())
        return max(0, int(wait * 1000))

    def _render(self, final: bool = False) -> None:
        self._timed("render", self._render_work, final)

    def _render_work(self, final: bool = False) -> None:
        """Show the newest pending image, unless the main thread is busy (``defer``); the
        ``final`` one, when the run ends, is shown at once, before the run's status changes."""
        if not final and self._pending is not None and self.defer() > 0 and self._worker is not None:
            self._render_timer.start(self._render_delay_ms() + 1)
            return
        update, self._pending = self._pending, None
        if update is not None:
            self._last_render = time.perf_counter()
            self._show_image(update)

    def _on_returned(self, summary) -> None:
        self._context["device"] = getattr(summary, "device", None)

    def _on_error(self, exc: BaseException) -> None:
        self._error = error_text(exc)
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
        self._finish(final_status(self._error, worker.abort_requested))

    # ------------------------------------------------------------------ helpers
    def _finish(self, status: str) -> None:
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        self._starting = False
        self._render_timer.stop()
        self._render(final=True)  # the last image the worker sent, before the status says so
        worker, self._worker = self._worker, None
        if worker is not None:
            close_generator(worker)
        self._progress.close()
        self.state.message = self._error or ""
        if self.state.n_images == 0:  # nothing was shown: drop the empty placeholders
            self.live.drop()
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
        self.live.update_metadata(lambda: self._metadata(status))

    def _add_image_layer(self, sino_shape: tuple[int, ...]) -> None:
        ctx = self._context
        self.live.add_image(sino_shape, ctx["name"], self._metadata("running"), ctx["scale"], ctx["slice_scale"])

    def _add_residual_layer(self, sino_shape: tuple[int, ...]) -> None:
        if self._params.residual:
            self.live.add_residual(sino_shape, self._context["name"], self._metadata("running"))

    def _add_uncertainty_layer(self, sino_shape: tuple[int, ...]) -> None:
        """Only for a final stage that averages its last iterates (reweighted TV, GANrec)."""
        if self._params.uncertainty and hasattr(self._params.plan.stages[-1].config, "average_last"):
            ctx = self._context
            self.live.add_uncertainty(sino_shape, ctx["name"], self._metadata("running"), ctx["scale"],
                                      ctx["slice_scale"])

    def _show_image(self, update: RunUpdate) -> None:
        if self.live.show(update):
            self._latency.expect(update.produced_at)
