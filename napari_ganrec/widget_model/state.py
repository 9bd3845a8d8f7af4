"""The evented state of the current run, folded from the worker's updates on the main thread, and the
time left it implies."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psygnal import evented

if TYPE_CHECKING:  # pragma: no cover
    from .run import RunUpdate

__all__ = ["RunState", "eta_seconds", "format_seconds"]


@evented(equality_operators={"image": operator.is_, "residual": operator.is_,
                             "uncertainty": operator.is_})
@dataclass
class RunState:
    """Evented state of the current run, folded from updates on the main thread.

    Observe a field with ``state.events.<name>.connect(callback)``. ``loss_history`` maps each
    loss name to ``(iterations, values)`` lists; it grows in place before ``iteration`` changes,
    so an ``iteration`` observer sees the new points.
    """

    status: str = "idle"  # idle | running | paused | stopping | finished | stopped | failed
    iteration: int = 0
    total: int = 0
    elapsed: float = 0.0
    message: str = ""
    image: Any = None
    residual: Any = None
    uncertainty: Any = None
    image_iteration: int = 0
    image_produced_at: float = 0.0
    n_images: int = 0
    loss_history: dict = field(default_factory=dict)
    #: (elapsed, iteration) of the first update with an iteration done: the time before it
    #: (set-up, first iteration) is left out of the time estimate
    first_progress: tuple = (0.0, 0)

    def reset(self, total: int) -> None:
        """Start a new run of ``total`` iterations."""
        self.loss_history = {}
        self.image = None
        self.residual = None
        self.uncertainty = None
        self.n_images = 0
        self.image_iteration = 0
        self.elapsed = 0.0
        self.message = ""
        self.total = int(total)
        self.first_progress = (0.0, 0)
        self.iteration = 0
        self.status = "running"

    @property
    def active(self) -> bool:
        """Whether a run is going (running, paused or stopping)."""
        return self.status in ("running", "paused", "stopping")

    def apply(self, update: RunUpdate) -> None:
        """Fold one worker update into the state (main thread)."""
        for it, losses in update.losses:
            for name, value in losses.items():
                its, vals = self.loss_history.setdefault(name, ([], []))
                its.append(it)
                vals.append(value)
        self.total = update.total
        self.elapsed = update.elapsed
        if self.first_progress[1] == 0 and update.iteration > 0:
            self.first_progress = (float(update.elapsed), int(update.iteration))
        if update.image is not None:
            self.image_iteration = update.image_iteration
            self.image_produced_at = update.produced_at
            self.residual = update.residual
            self.uncertainty = update.uncertainty
            self.n_images += 1
            self.image = update.image
        self.iteration = update.iteration

    def eta(self) -> float | None:
        """Seconds left, estimated from the iterations since the first update (or ``None``)."""
        t0, it0 = self.first_progress
        return eta_seconds(self.elapsed, self.iteration, self.total, t0, it0)

    def last_losses(self) -> dict[str, float]:
        """The latest value of each loss."""
        return {k: v[1][-1] for k, v in self.loss_history.items() if v[1]}


def eta_seconds(elapsed: float, iteration: int, total: int, first_elapsed: float = 0.0,
                first_iteration: int = 0, min_iterations: int = 2) -> float | None:
    """Seconds left in a run, from the rate since its first iterations.

    The rate is measured between ``(first_elapsed, first_iteration)`` (the first progress seen,
    which includes the set-up) and ``(elapsed, iteration)``. Returns ``None`` until
    ``min_iterations`` iterations have passed since then, or once the run is complete.
    """
    done = int(iteration) - int(first_iteration)
    if done < max(1, int(min_iterations)) or iteration >= total:
        return None
    rate = (float(elapsed) - float(first_elapsed)) / done
    return max(0.0, rate * (int(total) - int(iteration)))


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
