"""Running a :class:`~napari_ganrec.methods.Plan` on one batch: stage after stage, each starting
from the previous stage's image, each from its own warm-start state when one is given."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import Plan, StagePlan
from .base import Stage

__all__ = ["ChainStep", "Convergence", "build_stage", "iter_chain"]


def build_stage(plan: StagePlan, projector, sinograms: torch.Tensor, *, x0=None, seed: int = 0,
                acceleration=None, batch_mode: str = "shared") -> Stage:
    """The stage of ``plan``. ``batch_mode="independent"`` gives GANrec one network per slice."""
    cls = plan.info.stage
    if plan.name == "ganrec" and batch_mode == "independent" and sinograms.shape[0] > 1:
        from ..volume.stacked import StackedGANrec

        cls = StackedGANrec
    return cls(projector, sinograms, plan.config, x0=x0, seed=seed, acceleration=acceleration)


class Convergence:
    """Stop when the mean of a stage's ``monitor`` loss over the last ``window`` iterations fell by
    less than ``tol`` (relative) against the ``window`` before.

    The losses are kept as the stage returns them (on the device) and read only when a decision is
    due: at ``min_iterations`` and every ``window`` iterations after.
    """

    def __init__(self, tol: float | None, window: int, min_iterations: int, monitor: str):
        self.tol = tol
        self.window = window
        self.monitor = monitor
        self.min_iterations = max(min_iterations, 2 * window)
        self.count = 0
        self.pending: list = []
        self.values: list[float] = []

    def update(self, losses) -> bool:
        if self.tol is None:
            return False
        self.count += 1
        self.pending.append(losses)
        if self.count < self.min_iterations or (self.count - self.min_iterations) % self.window:
            return False
        for item in self.pending:
            value = float(item[self.monitor]) if self.monitor in item else math.nan
            if math.isfinite(value):
                self.values.append(value)
        self.pending = []
        w = self.window
        if len(self.values) < 2 * w:
            return False
        prev = float(np.mean(self.values[-2 * w:-w]))
        cur = float(np.mean(self.values[-w:]))
        return (prev - cur) <= self.tol * abs(prev)


@dataclass
class ChainStep:
    """One iteration of one stage of a chain.

    ``stage_index``/``stage`` say which stage, ``iteration``/``iterations`` count within it,
    ``step``/``steps`` over the whole chain. ``finished`` marks the chain's last record, after
    which ``states`` holds every stage's state (by stage name).
    """

    stage_index: int
    stage: Stage
    iteration: int
    iterations: int
    step: int
    steps: int
    losses: Mapping[str, float]
    converged: bool = False
    finished: bool = False
    states: dict[str, Any] = field(default_factory=dict)
    image: torch.Tensor | None = None  # the stage's final image, on its last record


def iter_chain(plan: Plan, projector, sinograms: torch.Tensor, *, seed: int = 0, acceleration=None,
               batch_mode: str = "shared", warm_state: Mapping[str, Any] | None = None,
               x0: torch.Tensor | None = None, tol: float | None = None, window: int = 10,
               min_iterations: int = 0, host_state: bool = False) -> Iterator[ChainStep]:
    """Run ``plan``'s stages on ``sinograms``, yielding a :class:`ChainStep` after every iteration.

    Each stage starts from the previous stage's image (the first from ``x0``) and, when
    ``warm_state`` has an entry under its name, from that state (e.g. the previous slice's). With
    ``tol`` a stage ends early once its ``monitor`` loss has stalled (:class:`Convergence`). The
    last record's ``states`` carries every stage's state (on the device unless ``host_state``).
    The live stage is closed when the chain moves on or the generator is closed.
    """
    for sp in plan.stages:  # a stage that cannot run on these angles fails before any work
        sp.config.check_angles(projector.geometry.angles_deg)
    steps = plan.iterations
    done = 0
    states: dict[str, Any] = {}
    x = x0
    last = len(plan.stages) - 1
    for k, sp in enumerate(plan.stages):
        stage = build_stage(sp, projector, sinograms, x0=x, seed=seed, acceleration=acceleration,
                            batch_mode=batch_mode)
        try:
            if warm_state and sp.name in warm_state:
                stage.load_state(warm_state[sp.name])
            stopper = Convergence(tol if sp.info.iterative else None, window, min_iterations, stage.monitor)
            for it in range(1, sp.iterations + 1):
                losses = stage.step()
                done += 1
                converged = stopper.update(losses) and it < sp.iterations
                end = converged or it == sp.iterations
                if end:
                    with torch.no_grad():
                        x = stage.image().detach()
                    states[sp.name] = stage.state(host=host_state)
                yield ChainStep(k, stage, it, sp.iterations, done, steps, losses, converged,
                                end and k == last, states if (end and k == last) else {},
                                x if end else None)
                if converged:
                    steps -= sp.iterations - it
                    break
        finally:
            stage.close()
