"""What a run shows besides its layers: napari's progress bar, moved a few times a second, and the
delay from an engine step to the canvas draw that shows its picture."""

from __future__ import annotations

import time

from napari.utils import progress


class ThrottledProgress:
    """napari's progress bar of one run, moved at most every ``interval`` seconds.

    napari's progress bar processes pending events when it moves, which may run the next update's
    handler inside this one: so callers move it last, once their state is consistent.
    """

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.bar = None
        self._n = 0
        self._at = 0.0

    def open(self, total: int, desc: str) -> None:
        self._n, self._at = 0, time.perf_counter()
        self.bar = progress(total=total, desc=desc)

    def move(self, iteration: int, force: bool = False) -> None:
        """Move the bar to ``iteration`` (unless it moved less than ``interval`` ago, or ``force``)."""
        bar = self.bar
        now = time.perf_counter()
        if bar is None or iteration <= self._n:
            return
        if not force and now - self._at < self.interval:
            return
        delta = iteration - self._n
        self._n, self._at = iteration, now
        bar.update(delta)

    def close(self) -> None:
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.close()


class PaintLatency:
    """Seconds from an engine step to the canvas draw that first showed its picture (``latencies``)."""

    def __init__(self, viewer):
        self.latencies: list[float] = []
        self._awaiting: float | None = None
        self._emitter = None
        # napari hands plugin widgets a PublicOnlyProxy of the viewer; the canvas's draw event
        # (for the latency figure only) is private, so it is read from the viewer behind it
        viewer = getattr(viewer, "__wrapped__", viewer)
        try:
            emitter = viewer.window._qt_viewer.canvas._scene_canvas.events.draw
        except AttributeError:
            return
        emitter.connect(self._on_draw)
        self._emitter = emitter

    def expect(self, produced_at: float) -> None:
        """A picture made at ``produced_at`` (``time.perf_counter``) is on its way to the canvas."""
        self._awaiting = produced_at

    def disconnect(self) -> None:
        if self._emitter is not None:
            try:
                self._emitter.disconnect(self._on_draw)
            except (RuntimeError, ValueError, TypeError):
                pass
            self._emitter = None

    def _on_draw(self, event=None) -> None:
        if self._awaiting is not None:
            self.latencies.append(time.perf_counter() - self._awaiting)
            self._awaiting = None
