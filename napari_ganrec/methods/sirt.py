"""SIRT (simultaneous iterative reconstruction), optionally non-negative."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._ops import safe_inverse
from .base import Stage, StageConfig

__all__ = ["SIRTConfig", "SIRT"]


@dataclass(frozen=True)
class SIRTConfig(StageConfig):
    """Options of SIRT.

    Attributes
    ----------
    nonnegative : bool
        Clip the image at 0 after every update.
    """

    nonnegative: bool = True


class SIRT(Stage):
    """``x <- x + C A^T R (b - A x)`` with ``R = 1/(A 1)``, ``C = 1/(A^T 1)``.

    Losses: ``residual``, the relative data misfit ``||b - A x|| / ||b||`` before the update.
    """

    name = "sirt"
    label = "SIRT"

    def __init__(self, projector, sinograms, config: SIRTConfig | None = None, *, x0=None, seed=0,
                 acceleration=None):
        super().__init__(projector, sinograms, config or SIRTConfig(), x0=x0)
        n = projector.n_det
        self.r = safe_inverse(projector.row_sums())
        self.c = safe_inverse(projector.col_sums())
        self.x = (x0.to(self.device, torch.float32).clone() if x0 is not None
                  else torch.zeros(self.batch, n, n, device=self.device))
        self.bnorm = float(torch.linalg.vector_norm(self.b)) or 1.0

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        res = self.b - self.projector.forward(self.x)
        self.x = self.x + self.c * self.projector.adjoint(self.r * res)
        if self.config.nonnegative:
            self.x.clamp_(min=0)
        self.iteration += 1
        return {"residual": float(torch.linalg.vector_norm(res)) / self.bnorm}

    def image(self) -> torch.Tensor:
        return self.x * self.mask

    _KEYS = ("x",)

    def close(self) -> None:
        self.x = None
