"""Reweighted TV (the log penalty) by preconditioned primal-dual steps: a method of its own.

Solves ``min_{x >= 0} 0.5 ||A x - b||^2 + lam TV_w(x)`` where ``TV_w`` is total variation with
per-pixel weights ``w``; every ``reweight_every`` iterations ``w = eps / (eps + |grad x| / s)``
(``s`` the image scale: the 99th percentile of the FBP). That is iteratively reweighted TV, a
majorise-minimise scheme for the non-convex penalty ``eps log(1 + |grad x| / eps)``, which keeps
edges and small pores sharper than plain TV. ``lam = tv_weight * mean|b| * n_angles / n_det`` (the
dimensionless weight of :mod:`~napari_ganrec.methods.tv`). The steps are Chambolle-Pock with the
diagonal preconditioners of Pock and Chambolle (2011): nothing to tune.

This is the solver that earlier versions ran inside the GANrec solver as its "prior stage"; it
won the quality benchmarks on its own (docs/experiments.md), so it carries its own name.

``tv_weight="auto"`` and ``eps="auto"`` (the defaults) take the strength from the data: the
sinogram's noise (:func:`napari_ganrec.noise.estimate_noise`, relative to ``mean|b|``) is mapped by
:func:`napari_ganrec.noise.auto_strength`; noise-free data get (0.1, 0.1), noisier data a larger
weight and a larger edge scale (docs/prior_strength.md). :meth:`RWTVConfig.resolved` makes the
choice (the callers that write metadata call it once per run, on the middle slice, so a volume
has one setting and the record says which); a number given for a field always wins.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ..acceleration import CompiledOrEager, Losses, resolve_acceleration
from ._ops import RunningMean, div, grad, safe_inverse, tv_weight_scale
from .base import Stage, StageConfig, check_fields
from .fbp import fbp

__all__ = ["RWTVConfig", "RWTV", "image_scale", "AUTO", "auto_or_number", "with_automatic_strength"]

#: The value of ``tv_weight``/``eps`` that asks for the automatic setting.
AUTO = "auto"


def auto_or_number(value, name: str, positive: bool, owner: str = "RWTVConfig") -> float | str:
    """``"auto"`` (any case) stays ``"auto"``; a finite number (> 0 or >= 0) becomes a float.

    Raises
    ------
    ValueError
        Anything else, naming ``owner.name``.
    """
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}.{name} must be 'auto' or a finite number {bound}, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ValueError(f"{owner}.{name} must be 'auto' or a finite number {bound}, got {value!r}")
    return v


@dataclass(frozen=True)
class RWTVConfig(StageConfig):
    """Options of reweighted TV.

    Attributes
    ----------
    tv_weight : float or "auto"
        Dimensionless weight ``lam`` of the (reweighted) TV term; "auto": from the data's noise
        (noise-free: 0.1).
    eps : float or "auto"
        Edge scale of the log penalty, in units of the image scale (smaller: more edge-selective);
        "auto": from the data's noise (noise-free: 0.1).
    reweight_every : int
        Iterations between two renewals of the weights (0: plain TV with these steps).
    average_last : int
        The result is the running mean of about the last this-many iterates (0: the last one); their
        spread is :meth:`RWTV.uncertainty`.
    circle : bool
        Only pixels inside the reconstruction circle are free (outside is 0).
    noise : float or None
        Relative noise ``sigma / mean|b|`` of the sinogram that the "auto" fields were chosen
        from: recorded by :meth:`resolved`, or given (e.g. known from the photon counts) to skip
        the estimate. None: estimated from the data when a field is "auto".
    """

    tv_weight: float | str = AUTO
    eps: float | str = AUTO
    reweight_every: int = 100
    average_last: int = 20
    circle: bool = True
    noise: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "tv_weight", auto_or_number(self.tv_weight, "tv_weight", positive=False))
        object.__setattr__(self, "eps", auto_or_number(self.eps, "eps", positive=True))
        if self.noise is not None:
            noise = auto_or_number(self.noise, "noise", positive=False)
            if noise == AUTO:
                raise ValueError("RWTVConfig.noise must be None (estimate it) or a finite number >= 0, got 'auto'")
            object.__setattr__(self, "noise", noise)
        check_fields(self, {"reweight_every": self.reweight_every >= 0,
                            "average_last": self.average_last >= 0})

    @property
    def automatic(self) -> bool:
        """True while a field is still "auto" (:meth:`resolved` has not run)."""
        return self.tv_weight == AUTO or self.eps == AUTO

    def resolved(self, sinograms) -> RWTVConfig:
        """This config with every "auto" field replaced by the value chosen for ``sinograms``.

        Parameters
        ----------
        sinograms : array_like or torch.Tensor
            ``(n_angles, n_det)`` or ``(n_slices, n_angles, n_det)`` line integrals (for a volume,
            e.g. its middle slice: one setting for all slices).

        Returns
        -------
        RWTVConfig
            ``self`` when nothing is "auto"; otherwise numbers, with ``noise`` recording the
            relative noise they were chosen from (:func:`napari_ganrec.noise.auto_strength`).
        """
        if not self.automatic:
            return self
        from ..noise import auto_strength, estimate_noise

        noise = self.noise if self.noise is not None else estimate_noise(sinograms).relative
        weight, eps = auto_strength(noise)
        return dataclasses.replace(
            self, noise=round(float(noise), 6),
            tv_weight=weight if self.tv_weight == AUTO else self.tv_weight,
            eps=eps if self.eps == AUTO else self.eps)


def with_automatic_strength(config, sinograms):
    """``config`` (any dataclass with ``tv_weight``/``eps``, e.g. a stage that re-runs reweighted
    TV) with those fields "auto" replaced by what :meth:`RWTVConfig.resolved` chooses for
    ``sinograms``; ``config`` itself when neither is "auto"."""
    if AUTO not in (config.tv_weight, config.eps):
        return config
    strength = RWTVConfig(tv_weight=config.tv_weight, eps=config.eps).resolved(sinograms)
    return dataclasses.replace(config, tv_weight=strength.tv_weight, eps=strength.eps)


def image_scale(projector, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, 1, 1)``: the 99th percentile of the (non-negative) FBP, a floor against empty slices."""
    x_fbp = (fbp(projector, b) * mask).clamp(min=0)
    xs = torch.quantile(x_fbp.reshape(b.shape[0], -1), 0.99, dim=1).view(-1, 1, 1)
    fallback = b.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12) / projector.n_det
    return torch.where(xs > 1e-6 * fallback, xs, fallback)


def _dual(y1, y2, sigma1, ax, b, xbar, lam_w, scale):
    """Dual updates and the losses (pure, so that it can be compiled)."""
    y1 = (y1 + sigma1 * (ax - b)) / (1.0 + sigma1)
    y2 = y2 + 0.5 * grad(xbar)
    norm = torch.sqrt((y2 * y2).sum(dim=1, keepdim=True))
    y2 = y2 / torch.clamp(norm / lam_w.clamp(min=1e-30), min=1.0)
    resid = (ax - b) / scale
    return y1, y2, 0.5 * (resid * resid).mean(), resid.abs().mean()


def _primal(x, tau, aty1, y2, mask):
    """Primal update (projected on x >= 0 and the mask) and the extrapolated point."""
    x_new = (x - tau * (aty1 - div(y2))).clamp(min=0) * mask
    return x_new, 2 * x_new - x


class RWTV(Stage):
    """Reweighted TV (see the module docstring).

    Losses: ``misfit`` = ``0.5 mean((A x - b) / max|b|)^2`` and ``abs_misfit`` =
    ``mean|A x - b| / max|b|`` (the data term; early stopping watches ``abs_misfit``).
    """

    name = "rwtv"
    label = "reweighted TV"
    monitor = "abs_misfit"
    _KEYS = ("x", "xbar", "y1", "y2", "w")

    def __init__(self, projector, sinograms, config: RWTVConfig | None = None, *, x0=None, seed=0,
                 acceleration=None):
        super().__init__(projector, sinograms, config or RWTVConfig(), x0=x0)
        self.config = cfg = self.config.resolved(self.b)  # "auto" not chosen upstream: from this batch
        n = projector.n_det
        acc = resolve_acceleration(acceleration, self.device)
        if not cfg.circle:
            self.mask = torch.ones_like(self.mask)
        with torch.no_grad():
            self.scale = self.b.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
            self.x_scale = image_scale(projector, self.b, self.mask)
            self.lam = (cfg.tv_weight * tv_weight_scale(self.b)).view(-1, 1, 1, 1)
            self.sigma1 = safe_inverse(projector.row_sums())
            self.tau = 1.0 / (projector.col_sums() + 4.0)
            self.x = (x0.to(self.device, torch.float32) * self.mask if x0 is not None
                      else torch.zeros(self.batch, n, n, device=self.device))
            self.xbar = self.x.clone()
            self.y1 = torch.zeros_like(self.b)
            self.y2 = torch.zeros(self.batch, 2, n, n, device=self.device)
            self.w = torch.ones(self.batch, 1, n, n, device=self.device)
        self._dual = CompiledOrEager(_dual, acc.compile, acc.compile_backend, "reweighted-TV dual update")
        self._primal = CompiledOrEager(_primal, acc.compile, acc.compile_backend, "reweighted-TV primal update")
        self._avg = RunningMean(cfg.average_last)

    @torch.no_grad()
    def step(self) -> Losses:
        cfg = self.config
        ax = self.projector.forward(self.xbar)
        self.y1, self.y2, l2, l1 = self._dual(self.y1, self.y2, self.sigma1, ax, self.b, self.xbar,
                                              self.lam * self.w, self.scale)
        self.x, self.xbar = self._primal(self.x, self.tau, self.projector.adjoint(self.y1), self.y2,
                                         self.mask)
        self.iteration += 1
        if cfg.reweight_every and self.iteration % cfg.reweight_every == 0:
            g = torch.sqrt((grad(self.x) ** 2).sum(dim=1, keepdim=True))
            eps = cfg.eps * self.x_scale.view(-1, 1, 1, 1)
            self.w = eps / (g + eps)
        self._avg.add(self.x)
        return Losses({"misfit": l2, "abs_misfit": l1})

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        x = self._avg.mean if self._avg.mean is not None else self.x
        return x.clamp(min=0) * self.mask

    @torch.no_grad()
    def uncertainty(self) -> torch.Tensor | None:
        return self._avg.std()

    def load_state(self, state) -> None:
        """Continue from an earlier run's image, duals and weights (e.g. the previous slice)."""
        super().load_state(state)
        self._avg.reset()

    def close(self) -> None:
        self.x = self.xbar = self.y1 = self.y2 = self.w = None
        self._avg.reset()
