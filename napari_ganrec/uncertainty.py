"""Seed ensembles of a network method: a mean image, a pixel-wise spread, and how well calibrated it is.

:func:`seed_ensemble` runs a method whose result depends on the seed (one with a GANrec stage:
``"ganrec"``, ``"rwtv+ganrec"``) once per seed and returns the mean and the standard deviation of
the members. :func:`coverage` measures whether that spread is an error bar: the fraction of pixels
whose error ``|mean - gt|`` lies within ``k`` standard deviations (a calibrated Gaussian gives
0.683 / 0.954 / 0.997 for k = 1 / 2 / 3). :func:`calibration_scale` says by how much the spread
would have to be multiplied for the k = 1 coverage to be 0.683.

The spread of a seed ensemble only measures how much the network's initialisation and dropout
change the result; it knows nothing of the noise in the data or of what the missing wedge hides,
so it is an uncertainty of the solver, not a posterior (docs/prior_strength.md has the figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import erf, sqrt

import numpy as np

from .geometry import circle_mask, validate_seed
from .methods import make_plan

__all__ = ["EnsembleResult", "seed_ensemble", "coverage", "calibration_scale", "gaussian_coverage"]


@dataclass
class EnsembleResult:
    """The members of a seed ensemble and their statistics.

    Attributes
    ----------
    mean, std : numpy.ndarray
        Pixel-wise mean and standard deviation (``ddof=1``) of the members, the shape of one
        reconstruction, in the sinogram's units per pixel.
    members : numpy.ndarray
        ``(K, ...)``: every member's reconstruction.
    seeds : tuple of int
        The seed of each member.
    method : str
        What ran (the plan's name, e.g. ``"rwtv+ganrec"``).
    """

    mean: np.ndarray
    std: np.ndarray
    members: np.ndarray = field(repr=False)
    seeds: tuple[int, ...]
    method: str


def _seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 2:
            raise ValueError(f"seeds must be a count >= 2 or a sequence of >= 2 distinct seeds, got {seeds}")
        return tuple(range(int(seeds)))
    if isinstance(seeds, Sequence) and not isinstance(seeds, str):
        out = tuple(validate_seed(s, name="seeds[]") for s in seeds)
        if len(out) < 2 or len(set(out)) != len(out):
            raise ValueError(f"seeds must hold at least 2 distinct seeds, got {list(seeds)}")
        return out
    raise ValueError(f"seeds must be a count >= 2 or a sequence of distinct integers, got {seeds!r}")


def seed_ensemble(sinogram, angles, method: str = "ganrec", seeds: int | Sequence[int] = 4,
                  iterations=300, **kwargs) -> EnsembleResult:
    """Reconstruct with every seed of ``seeds`` and return the members' mean and spread.

    Parameters
    ----------
    sinogram, angles
        As for :func:`napari_ganrec.reconstruct`.
    method : str
        A method with a GANrec stage (``"ganrec"``, ``"rwtv+ganrec"``): only there does the seed
        change the result.
    seeds : int or sequence of int
        ``K`` (the seeds ``0 .. K-1``) or the seeds themselves; at least two, distinct.
    iterations : int, dict or str
        Iterations per stage (:func:`napari_ganrec.reconstruct`).
    **kwargs
        Anything else :func:`napari_ganrec.reconstruct` takes (``center``, ``device``, options).

    Returns
    -------
    EnsembleResult

    Raises
    ------
    ValueError
        A method without a network stage, fewer than two or repeated seeds, or what
        :func:`~napari_ganrec.reconstruct` refuses.
    """
    from .api import reconstruct

    if "seed" in kwargs:
        raise ValueError("seed_ensemble takes seeds=..., not seed=")
    plan = make_plan(method, iterations, {k: v for k, v in kwargs.items()
                                          if k not in ("center", "device", "preview_every", "acceleration")})
    if not any(s.name == "ganrec" for s in plan.stages):
        raise ValueError(f"method {plan.name!r} has no network stage, so every seed gives the same image; "
                         "a seed ensemble needs one, e.g. method='ganrec' or 'rwtv+ganrec'")
    seed_list = _seeds(seeds)
    members = np.stack([reconstruct(sinogram, angles, method=method, iterations=iterations, seed=s, **kwargs)
                        for s in seed_list])
    return EnsembleResult(members.mean(axis=0), members.std(axis=0, ddof=1), members, seed_list, plan.name)


def _inputs(mean, std, gt, mask):
    mean, std, gt = (np.asarray(a, dtype=np.float64) for a in (mean, std, gt))
    if not (mean.shape == std.shape == gt.shape) or mean.ndim < 1:
        raise ValueError(f"mean, std and gt must have one shape, got {mean.shape}, {std.shape}, {gt.shape}")
    for name, a in (("mean", mean), ("std", std), ("gt", gt)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} holds NaN or inf values")
    if (std < 0).any():
        raise ValueError("std must be >= 0 everywhere")
    if mask is None:
        if mean.ndim >= 2 and mean.shape[-1] == mean.shape[-2]:
            mask = np.broadcast_to(circle_mask(mean.shape[-1]), mean.shape)
        else:
            mask = np.ones(mean.shape, bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != mean.shape:
        try:
            mask = np.broadcast_to(mask, mean.shape)
        except ValueError:
            raise ValueError(f"mask of shape {mask.shape} does not fit images of shape {mean.shape}") from None
    if not mask.any():
        raise ValueError("mask selects no pixel")
    return np.abs(mean - gt)[mask], std[mask]


def coverage(mean, std, gt, ks: Sequence[float] = (1.0, 2.0, 3.0), mask=None) -> dict[float, float]:
    """Fraction of pixels whose error ``|mean - gt|`` is at most ``k * std``, for each ``k``.

    Parameters
    ----------
    mean, std, gt : array_like
        One shape: the estimate, its pixel-wise standard deviation and the truth.
    ks : sequence of float
        The multiples of ``std`` (> 0).
    mask : array_like of bool, optional
        Pixels that count (default: the reconstruction circle for square images, else all).

    Returns
    -------
    dict
        ``{k: fraction}``; compare with :func:`gaussian_coverage`.

    Raises
    ------
    ValueError
        Shapes that differ, NaN/inf, a negative std, ``k <= 0``, an empty mask.
    """
    err, sd = _inputs(mean, std, gt, mask)
    out = {}
    for k in ks:
        k = float(k)
        if not np.isfinite(k) or k <= 0:
            raise ValueError(f"ks must be positive numbers, got {k}")
        out[k] = float(np.mean(err <= k * sd))
    return out


def calibration_scale(mean, std, gt, mask=None) -> float:
    """The factor ``c`` for which ``c * std`` covers 68.3 % of the errors (1: calibrated at k = 1;
    > 1: the spread is too small). ``inf`` when more than 31.7 % of the pixels have ``std == 0``
    and a nonzero error."""
    err, sd = _inputs(mean, std, gt, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, err / np.where(sd > 0, sd, 1.0), np.where(err > 0, np.inf, 0.0))
    return float(np.quantile(z, gaussian_coverage(1.0)))


def gaussian_coverage(k: float) -> float:
    """``P(|Z| <= k)`` for a standard normal ``Z`` (0.683 for k = 1)."""
    return erf(float(k) / sqrt(2.0))
