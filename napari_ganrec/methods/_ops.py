"""Small operators the stages share: image gradient and divergence, safe inverses, the TV scale,
and a running mean/variance of iterates (for averaged results and their spread)."""

from __future__ import annotations

import torch

__all__ = ["grad", "div", "safe_inverse", "tv_weight_scale", "RunningMean"]


def grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences ``(B, 2, n, n)`` of ``(B, n, n)`` images (zero at the far edge)."""
    gy = torch.zeros_like(x)
    gx = torch.zeros_like(x)
    gy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    gx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack((gy, gx), dim=1)


def div(p: torch.Tensor) -> torch.Tensor:
    """Negative adjoint of :func:`grad`."""
    py, px = p[:, 0], p[:, 1]
    dy = torch.zeros_like(py)
    dx = torch.zeros_like(px)
    dy[..., 0, :] = py[..., 0, :]
    dy[..., 1:-1, :] = py[..., 1:-1, :] - py[..., :-2, :]
    dy[..., -1, :] = -py[..., -2, :]
    dx[..., :, 0] = px[..., :, 0]
    dx[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    dx[..., :, -1] = -px[..., :, -2]
    return dy + dx


def safe_inverse(t: torch.Tensor) -> torch.Tensor:
    """``1 / t`` where ``t > 1e-6``, else 0."""
    out = torch.zeros_like(t)
    nz = t > 1e-6
    out[nz] = 1.0 / t[nz]
    return out


def tv_weight_scale(sino: torch.Tensor) -> torch.Tensor:
    """Per-slice scale that makes a TV weight dimensionless: ``mean|b| * n_angles / n_det``.

    Scaling the data by ``s`` scales the best absolute TV weight by ``s``; this keeps a given
    ``tv_weight`` meaningful across data sets, angle counts and sizes.
    """
    b = sino.abs().mean(dim=(-2, -1))
    return b.clamp(min=1e-12) * sino.shape[-2] / sino.shape[-1]


class RunningMean:
    """Exponential-window mean and variance of the last ``window`` iterates (0: off)."""

    def __init__(self, window: int):
        self.window = int(window)
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        if not self.window:
            return
        if self.mean is None:
            self.mean, self.var = x.clone(), torch.zeros_like(x)
        else:
            a = 1.0 / min(self.count + 1, self.window)
            delta = x - self.mean
            self.mean = self.mean + a * delta
            self.var = (1 - a) * (self.var + a * delta * delta)
        self.count += 1

    def reset(self) -> None:
        self.mean = self.var = None
        self.count = 0

    def std(self) -> torch.Tensor | None:
        return None if self.var is None else self.var.clamp(min=0).sqrt()
