"""The thread worker of one run: made from plain values, wired to the controller's handlers, and
taken apart again (detached, stopped, waited for, its generator closed) when the run ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt

from ..widget_model.run import RunParams, run_reconstruction


@dataclass
class Handlers:
    """The main-thread handlers of a run worker's signals."""

    yielded: Callable
    returned: Callable
    errored: Callable
    aborted: Callable
    paused: Callable
    resumed: Callable
    finished: Callable


def make_run_worker(sinograms: np.ndarray, params: RunParams, handlers: Handlers,
                    iterate: Callable | None = None):
    """A worker running :func:`~napari_ganrec.widget_model.run.run_reconstruction` (not started).

    Returns
    -------
    worker, done
        The worker, and an event its thread sets when it finishes (so a caller can wait for it
        without an event loop).
    """
    kwargs = {} if iterate is None else {"iterate": iterate}
    worker = create_worker(run_reconstruction, sinograms, params, _start_thread=False,
                           _ignore_errors=True, **kwargs)
    done = threading.Event()
    # set from the worker thread itself, so shutdown() can wait without an event loop
    worker.finished.connect(done.set, Qt.ConnectionType.DirectConnection)
    worker.yielded.connect(handlers.yielded)
    worker.returned.connect(handlers.returned)
    worker.errored.connect(handlers.errored)
    worker.aborted.connect(handlers.aborted)
    worker.paused.connect(handlers.paused)
    worker.resumed.connect(handlers.resumed)
    worker.finished.connect(handlers.finished)
    return worker, done


def detach_and_stop(worker, done: threading.Event, finished: Callable, timeout: float) -> bool:
    """Cut the worker off from its handlers, ask it to stop and wait up to ``timeout`` seconds.

    Returns whether its thread finished in time.
    """
    for sig in (worker.yielded, worker.returned, worker.errored, worker.aborted,
                worker.paused, worker.resumed):
        try:
            sig.disconnect()
        except (TypeError, RuntimeError):
            pass
    try:
        worker.finished.disconnect(finished)
    except (TypeError, RuntimeError):
        pass
    worker.quit()
    if worker.is_paused:
        worker.resume()
    if worker.is_running or getattr(worker, "_paused", False):
        return done.wait(timeout)
    return True


def close_generator(worker) -> None:
    """Close the worker's generator: frees the solver now rather than at garbage collection."""
    gen = getattr(worker, "_gen", None)
    if gen is not None:
        try:
            gen.close()
        except ValueError:  # still executing (shutdown timed out)
            pass
