"""Thresholds: parsing ``otsu``/``li``/a number, histograms read slab by slab, Otsu and Li on a histogram,
the pore threshold inside the particle mask."""

from __future__ import annotations

import math
from collections.abc import Generator

import numpy as np

from ._common import THRESHOLD_METHODS, Threshold, _check_volume, _chunk_for, _drain, _read, _scaled, _slabs


def parse_threshold(value, name: str = "threshold") -> Threshold:
    """``"otsu"``/``"li"`` (any case) or a finite number (also given as a string).

    Raises
    ------
    ValueError
        Naming ``name`` when the value is neither.
    """
    if isinstance(value, str):
        v = value.strip().lower()
        if v in THRESHOLD_METHODS:
            return v
        try:
            value = float(v)
        except ValueError:
            raise ValueError(
                f"{name} must be one of {THRESHOLD_METHODS} or a number, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be one of {THRESHOLD_METHODS} or a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value



# -------------------------------------------------------------------------------- histograms
def _value_range(volume, chunk: int) -> Generator[float, None, tuple[float, float]]:
    nz = volume.shape[0]
    lo, hi = math.inf, -math.inf
    for z0, z1 in _slabs(nz, chunk):
        s = _read(volume, z0, z1)
        smin, smax = float(s.min()), float(s.max())
        if not (math.isfinite(smin) and math.isfinite(smax)):
            raise ValueError(f"volume contains NaN or infinite values (slices {z0}:{z1})")
        lo, hi = min(lo, smin), max(hi, smax)
        yield z1 / nz
    return lo, hi


def _histogram_gen(volume, mask, bins, value_range, chunk):
    nz = volume.shape[0]
    lo, hi = value_range
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, int(bins) + 1)
    counts = np.zeros(int(bins), dtype=np.int64)
    for z0, z1 in _slabs(nz, chunk):
        s = _read(volume, z0, z1)
        if mask is not None:
            s = s[np.asarray(mask[z0:z1], dtype=bool)]
        counts += np.histogram(s, bins=edges)[0]
        yield z1 / nz
    return counts, edges


def volume_histogram(
    volume,
    mask=None,
    bins: int = 1024,
    value_range: tuple[float, float] | None = None,
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of a volume (optionally only where ``mask``), computed slab by slab.

    Parameters
    ----------
    volume : array (z, y, x)
        Any array supporting slicing along z (numpy, memmap, zarr, h5py).
    mask : bool array of the same shape, optional
        Only voxels where it is true are counted.
    bins : int
        Number of equal bins.
    value_range : (float, float), optional
        Histogram range; the volume's min and max by default.
    chunk : int, optional
        Slices per slab.

    Returns
    -------
    counts : (bins,) int64
    edges : (bins + 1,) float64
    """
    shape = _check_volume(volume)
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have the volume's shape {shape}, got {tuple(mask.shape)}")
    chunk = _chunk_for(shape, chunk)
    if value_range is None:
        value_range = _drain(_value_range(volume, chunk))
    return _drain(_histogram_gen(volume, mask, bins, value_range, chunk))


def _otsu_hist(counts: np.ndarray, edges: np.ndarray) -> float:
    centers = 0.5 * (edges[:-1] + edges[1:])
    c = counts.astype(np.float64)
    w1 = np.cumsum(c)
    w2 = np.cumsum(c[::-1])[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.cumsum(c * centers) / w1
        m2 = (np.cumsum((c * centers)[::-1]) / w2[::-1])[::-1]
        var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    var = np.nan_to_num(var, nan=-1.0)
    idx = int(np.argmax(var))
    return float(edges[idx + 1])


def _li_hist(counts: np.ndarray, edges: np.ndarray, tol: float | None = None) -> float:
    """Li's minimum cross-entropy threshold on a histogram (as skimage.filters.threshold_li)."""
    centers = 0.5 * (edges[:-1] + edges[1:])
    c = counts.astype(np.float64)
    lo = float(edges[0])
    x = centers - lo + 1e-12  # positive values as in skimage
    width = float(edges[1] - edges[0])
    tol = width / 2 if tol is None else tol
    t_next = float(np.sum(c * x) / c.sum())
    t_curr = -2 * tol
    for _ in range(1000):
        if abs(t_next - t_curr) <= tol:
            break
        t_curr = t_next
        fore = x > t_curr
        back = ~fore
        if c[fore].sum() == 0 or c[back].sum() == 0:
            break
        mf = np.sum(c[fore] * x[fore]) / c[fore].sum()
        mb = np.sum(c[back] * x[back]) / c[back].sum()
        if mb <= 0:
            break
        t_next = float((mb - mf) / (np.log(mb) - np.log(mf)))
    # snap to the nearest bin edge so that the rule ``value >= t`` is the histogram's split
    k = int(np.clip(np.round((t_next + lo - edges[0]) / width), 1, len(edges) - 2))
    return float(edges[k])


def threshold_from_histogram(counts: np.ndarray, edges: np.ndarray, method: str) -> float:
    """The ``"otsu"`` or ``"li"`` threshold of a histogram, as a bin edge.

    Voxels ``>= threshold`` are the bright class.
    """
    counts = np.asarray(counts)
    edges = np.asarray(edges, dtype=np.float64)
    if counts.ndim != 1 or edges.shape != (counts.size + 1,):
        raise ValueError("edges must have one more element than counts")
    if counts.sum() == 0:
        raise ValueError("the histogram is empty (no voxels to threshold)")
    occupied = np.flatnonzero(counts)
    if occupied.size == 1:  # a single value: everything is the bright class
        return float(edges[occupied[0]])
    if method == "otsu":
        return _otsu_hist(counts, edges)
    if method == "li":
        return _li_hist(counts, edges)
    raise ValueError(f"method must be one of {THRESHOLD_METHODS}, got {method!r}")



def compute_pore_threshold(
    volume,
    mask: np.ndarray,
    method: Threshold = "otsu",
    *,
    chunk: int | None = None,
    bins: int = 1024,
) -> float:
    """The pore threshold from the values inside the particle ``mask``.

    Values above the median of the masked voxels (the solid phase and dense inclusions) are clipped
    to it first, so that dense inclusions cannot pull an automatic threshold between solid and
    inclusion. A number is returned unchanged.
    """
    spec = parse_threshold(method, "pore_threshold")
    if not isinstance(spec, str):
        return float(spec)
    shape = _check_volume(volume)
    chunk = _chunk_for(shape, chunk)
    return _drain(_pore_threshold_gen(volume, mask, spec, chunk, bins))


def _pore_threshold_gen(volume, mask, method, chunk, bins):
    nz = volume.shape[0]
    lo, hi = math.inf, -math.inf
    for z0, z1 in _slabs(nz, chunk):
        m = mask[z0:z1]
        if m.any():
            s = _read(volume, z0, z1)[m]
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
        yield 0.25 * z1 / nz
    if not math.isfinite(lo):
        raise ValueError("the particle mask is empty; cannot compute a pore threshold")
    counts, edges = yield from _scaled(_histogram_gen(volume, mask, bins, (lo, hi), chunk), 0.25, 1)
    # clip at the median (solid level): dense inclusions then sit in the solid class
    cum = np.cumsum(counts)
    k = int(np.searchsorted(cum, cum[-1] / 2.0))
    clipped = counts[: k + 1].copy()
    clipped[k] += counts[k + 1 :].sum()
    return threshold_from_histogram(clipped, edges[: k + 2], method)
