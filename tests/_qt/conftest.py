"""Fixtures of the GUI tests: a main-thread heartbeat and a check that no worker outlives a test."""

import collections
import gc
import sys
import threading
import time
import traceback

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


class Heartbeat:
    """A QTimer ticking on the main thread; the longest gap between ticks is the worst stall.

    ``max_stall`` is the longest gap minus the timer interval: how long the main thread (the
    viewer) could not answer.
    """

    def __init__(self, interval_ms: int = 10, sample_after: float = 0.08):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self.cpu: list[float] = []  # main-thread CPU time spent within each gap
        self._last = None
        self._last_cpu = 0.0
        # a sampler thread notes what the main thread is doing while a tick is overdue
        self.sample_after = sample_after
        self.stacks: collections.Counter = collections.Counter()
        self._main = threading.get_ident()
        self._sampling = False
        self._sampler = None
        self.gc_pauses: list[tuple[int, float]] = []  # (generation, seconds) of collections
        self._gc_start = 0.0

    def _gc(self, phase, info):
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_start))

    def _sample(self):
        while self._sampling:
            time.sleep(0.01)
            last = self._last
            if last is not None and time.perf_counter() - last > self.sample_after:
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-8:]
                    self.stacks[" <- ".join(
                        f"{f.name}({f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
                        for f in reversed(stack))] += 1

    def report(self, n: int = 5) -> str:
        """The main thread's most frequent stacks during overdue ticks (10 ms samples)."""
        lines = [f"{c * 10} ms: {s}" for s, c in self.stacks.most_common(n)]
        worst_gc = max(self.gc_pauses, key=lambda g: g[1], default=None)
        if worst_gc is not None:
            lines.append(f"longest garbage collection: generation {worst_gc[0]}, "
                         f"{worst_gc[1] * 1000:.0f} ms ({len(self.gc_pauses)} collections)")
        return "\n".join(lines)

    def _tick(self):
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            self.gaps.append(now - self._last)
            self.cpu.append(cpu - self._last_cpu)
        self._last, self._last_cpu = now, cpu

    def start(self):
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()
        self.timer.start()
        self._sampling = True
        gc.callbacks.append(self._gc)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def stop(self):
        self.timer.stop()
        self._tick()
        self._sampling = False
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._sampler is not None:
            self._sampler.join()

    @property
    def max_stall(self) -> float:
        return max(self.gaps, default=0.0) - self.interval

    @property
    def max_busy(self) -> float:
        """The most main-thread CPU time between two ticks: the work itself, whatever the load."""
        return max(self.cpu, default=0.0)

    def summary(self) -> str:
        i = max(range(len(self.gaps)), key=self.gaps.__getitem__) if self.gaps else None
        cpu = self.cpu[i] * 1000 if i is not None else 0.0
        return (f"worst stall {self.max_stall * 1000:.0f} ms (main thread busy {cpu:.0f} ms of "
                f"it), most main-thread CPU between two ticks {self.max_busy * 1000:.0f} ms")


@pytest.fixture
def heartbeat():
    hb = Heartbeat()
    yield hb
    hb.timer.stop()
    hb._sampling = False
    if hb._gc in gc.callbacks:
        gc.callbacks.remove(hb._gc)


@pytest.fixture(autouse=True)
def _no_worker_left(qapp):
    """After each GUI test (and the viewer's teardown), no worker thread may still run."""
    yield
    from qtpy.QtCore import QThreadPool
    from superqt.utils._qthreading import WorkerBase

    pool = QThreadPool.globalInstance()
    ours = [t for t in threading.enumerate() if t.name.startswith("napari-ganrec")]
    assert not ours, f"threads still alive after the test: {ours}"
    running = [w for w in list(WorkerBase._worker_set) if w.is_running]
    assert not running, f"workers still running after the test: {running}"
    assert pool.waitForDone(3000), "a thread of the pool is still busy 3 s after the test"

