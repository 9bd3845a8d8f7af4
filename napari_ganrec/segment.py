"""3-D pore segmentation and pore statistics of a reconstructed particle (pure numpy/scipy/skimage).

The pipeline (:func:`iter_segment`, :func:`segment`):

1. optional denoising (Gaussian, median or non-local means), slab by slab;
2. the *particle mask*: voxels at or above the particle threshold, the largest connected component,
   an optional morphological closing, then every cavity it encloses filled in 3-D. Pores are voids
   *inside* this mask, so the air around the particle is never counted as a pore;
3. the *pore threshold* (Otsu, Li or a value) on the values inside the mask; pores are mask voxels
   below it;
4. 3-D connected components, a minimum pore size, an optional watershed split of touching pores;
5. the per-pore table (volume, equivalent diameter, centroid, bounding box, sphericity, whether the
   pore touches the particle surface) and totals (porosity, pore count, size distribution).

Memory: the volume is only read in z-slabs (a ``numpy.memmap``, zarr or h5py array works), never
copied in float64. Whole-volume arrays are one ``bool`` particle mask, one ``bool`` pore mask and
one ``int32`` label array (reused as the scratch buffer of every labelling step), plus one float32
array for the denoised volume only when denoising is asked for and ``inplace`` is false.

Thresholds are histogram based (``bins`` bins over the value range) and are returned as the edge
between two bins: solid is ``value >= threshold``, pore is ``value < threshold``.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "SegmentProgress",
    "SegmentationResult",
    "THRESHOLD_METHODS",
    "DENOISE_METHODS",
    "parse_threshold",
    "volume_histogram",
    "threshold_from_histogram",
    "denoise_volume",
    "estimate_noise_sigma",
    "particle_mask",
    "compute_pore_threshold",
    "label_pores",
    "pore_table",
    "pore_size_distribution",
    "estimate_thresholds",
    "preview_slice",
    "iter_segment",
    "segment",
    "save_table_csv",
    "save_labels_tiff",
]

THRESHOLD_METHODS = ("otsu", "li")
DENOISE_METHODS = ("gaussian", "median", "nlm")
_DEFAULT_STRENGTH = {"gaussian": 1.0, "median": 3.0, "nlm": 0.8}
_SLAB_VOXELS = 1 << 22  # ~16 MB of float32 per slab by default

Threshold = str | float


# ----------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class SegmentProgress:
    """One progress record of :func:`iter_segment`.

    Attributes
    ----------
    stage : str
        ``"denoise"``, ``"particle"``, ``"pores"``, ``"watershed"``, ``"table"`` or ``"done"``.
    fraction : float
        Overall progress in ``[0, 1]``.
    message : str
        A human readable line.
    """

    stage: str
    fraction: float
    message: str = ""


def _check_volume(volume, name: str = "volume") -> tuple[int, int, int]:
    shape = tuple(getattr(volume, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"{name} must be a 3-D array (z, y, x), got shape {shape}")
    if min(shape) < 2:
        raise ValueError(f"{name} must be at least 2 voxels along each axis, got shape {shape}")
    dtype = np.dtype(getattr(volume, "dtype", np.float32))
    if dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {dtype}")
    return shape  # type: ignore[return-value]


def _chunk_for(shape, chunk: int | None, halo: int = 0) -> int:
    if chunk is None:
        chunk = max(1, _SLAB_VOXELS // max(1, shape[1] * shape[2]))
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of slices, got {chunk}")
    return max(chunk, halo, 1)


def _slabs(nz: int, chunk: int) -> Iterator[tuple[int, int]]:
    for z0 in range(0, nz, chunk):
        yield z0, min(nz, z0 + chunk)


def _read(volume, z0: int, z1: int) -> np.ndarray:
    return np.asarray(volume[z0:z1], dtype=np.float32)


def _drain(gen: Generator):
    """Run a generator to its end and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _staged(gen: Generator, stage: str, lo: float, hi: float, message: str):
    """Map a generator of fractions onto ``SegmentProgress`` records in ``[lo, hi]``."""
    while True:
        try:
            f = next(gen)
        except StopIteration as stop:
            return stop.value
        yield SegmentProgress(stage, lo + (hi - lo) * float(min(max(f, 0.0), 1.0)), message)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    return ndimage.generate_binary_structure(3, connectivity)


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


# --------------------------------------------------------------------------------- denoising
def estimate_noise_sigma(volume: np.ndarray) -> float:
    """Robust estimate of white-noise sigma: MAD of neighbour differences along x / (0.6745 sqrt 2).

    Needs no PyWavelets (which ``skimage.restoration.estimate_sigma`` does); edges are rare enough
    in a particle volume for the median to ignore them.
    """
    a = np.asarray(volume, dtype=np.float32)
    d = np.diff(a, axis=-1).ravel()
    if d.size == 0:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) / (0.6745 * math.sqrt(2.0)))


def _denoise_setup(method: str, strength: float | None, volume, chunk):
    if method not in DENOISE_METHODS:
        raise ValueError(f"denoise must be None or one of {DENOISE_METHODS}, got {method!r}")
    s = _DEFAULT_STRENGTH[method] if strength is None else float(strength)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"denoise_strength must be a positive number, got {strength!r}")
    if method == "gaussian":
        halo = int(4.0 * s + 0.5)

        def f(a):
            return ndimage.gaussian_filter(a, sigma=s, mode="reflect", truncate=4.0)

    elif method == "median":
        size = int(round(s))
        if size < 2:
            raise ValueError(f"denoise_strength (median size) must be at least 2, got {strength}")
        halo = size // 2 + 1

        def f(a):
            return ndimage.median_filter(a, size=size, mode="reflect")

    else:  # nlm
        from skimage.restoration import denoise_nl_means

        patch, dist = 3, 3
        halo = patch // 2 + dist + 1
        nz = volume.shape[0]
        mid = _read(volume, max(0, nz // 2 - 2), min(nz, nz // 2 + 2))
        sigma = estimate_noise_sigma(mid)
        h = s * sigma if sigma > 0 else s * 1e-3

        def f(a):
            return denoise_nl_means(
                a,
                patch_size=patch,
                patch_distance=dist,
                h=h,
                sigma=sigma,
                fast_mode=True,
                channel_axis=None,
            ).astype(np.float32, copy=False)

    return f, halo


def _denoise_gen(volume, method, strength, chunk, out):
    shape = volume.shape
    nz = shape[0]
    f, halo = _denoise_setup(method, strength, volume, chunk)
    chunk = _chunk_for(shape, chunk, halo)
    inplace = out is volume
    saved = None  # original values of the slices just before the current slab (in place only)
    for z0, z1 in _slabs(nz, chunk):
        a0, b1 = max(0, z0 - halo), min(nz, z1 + halo)
        slab = np.array(volume[a0:b1], dtype=np.float32, copy=True)
        if inplace and saved is not None and z0 > a0:
            slab[: z0 - a0] = saved[-(z0 - a0) :]
        res = np.asarray(f(slab), dtype=np.float32)
        if inplace:
            saved = np.array(volume[max(0, z1 - halo) : z1], dtype=np.float32, copy=True)
        out[z0:z1] = res[z0 - a0 : z0 - a0 + (z1 - z0)]
        yield z1 / nz
    return out


def denoise_volume(
    volume,
    method: str = "gaussian",
    strength: float | None = None,
    *,
    chunk: int | None = None,
    out=None,
    inplace: bool = False,
) -> np.ndarray:
    """Denoise a volume slab by slab (with overlapping halos, so slabs join seamlessly).

    Parameters
    ----------
    volume : array (z, y, x)
    method : {"gaussian", "median", "nlm"}
        Gaussian filter (``strength`` = sigma in voxels, default 1), median filter (``strength`` =
        window size, default 3) or non-local means (``strength`` = h in units of the estimated
        noise sigma, default 0.8; patch 3, search distance 3).
    strength : float, optional
    chunk : int, optional
        Slices per slab (at least the filter's halo).
    out : array, optional
        Where to write the float32 result (e.g. a memmap); a new array by default.
    inplace : bool
        Write into ``volume`` itself (it must be a writable float32 numpy array).

    Returns
    -------
    numpy.ndarray
        float32 denoised volume (``out`` or ``volume`` when given/in place).
    """
    shape = _check_volume(volume)
    if inplace:
        if not (
            isinstance(volume, np.ndarray) and volume.dtype == np.float32 and volume.flags.writeable
        ):
            raise ValueError("inplace=True needs volume to be a writable float32 numpy array")
        out = volume
    elif out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have the volume's shape {shape}, got {tuple(out.shape)}")
    return _drain(_denoise_gen(volume, method, strength, chunk, out))


# ----------------------------------------------------------------------------- particle mask
def _particle_gen(volume, threshold, closing, connectivity, chunk, bins, labels_buf):
    shape = volume.shape
    nz = shape[0]
    struct = _structure(connectivity)
    thr = threshold
    if isinstance(threshold, str):
        vr = yield from _scaled(_value_range(volume, chunk), 0.0, 0.1)
        counts, edges = yield from _scaled(_histogram_gen(volume, None, bins, vr, chunk), 0.1, 0.3)
        thr = threshold_from_histogram(counts, edges, threshold)
    thr = float(thr)
    mask = np.empty(shape, dtype=bool)
    for z0, z1 in _slabs(nz, chunk):
        np.greater_equal(_read(volume, z0, z1), thr, out=mask[z0:z1])
        yield 0.3 + 0.1 * z1 / nz
    # largest connected component of the solid phase
    lab = labels_buf
    n = ndimage.label(mask, structure=struct, output=lab)
    yield 0.5
    if n == 0:
        raise ValueError(
            f"no voxel is at or above the particle threshold {thr:.6g}; lower particle_threshold"
        )
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        biggest = int(np.argmax(sizes))
        for z0, z1 in _slabs(nz, chunk):
            np.equal(lab[z0:z1], biggest, out=mask[z0:z1])
    yield 0.6
    if closing:
        mask = yield from _scaled(_closing_gen(mask, int(closing), chunk), 0.6, 0.8)
    # fill every cavity: background not connected to the volume border
    for z0, z1 in _slabs(nz, chunk):
        np.logical_not(mask[z0:z1], out=mask[z0:z1])
    nb = ndimage.label(mask, structure=_structure(1), output=lab)
    border = np.unique(
        np.concatenate(
            [
                lab[0].ravel(),
                lab[-1].ravel(),
                lab[:, 0].ravel(),
                lab[:, -1].ravel(),
                lab[:, :, 0].ravel(),
                lab[:, :, -1].ravel(),
            ]
        )
    )
    outside = np.zeros(nb + 1, dtype=bool)
    outside[border[border > 0]] = True
    yield 0.9
    for z0, z1 in _slabs(nz, chunk):
        np.logical_not(outside[lab[z0:z1]], out=mask[z0:z1])
    yield 1.0
    return mask, thr


def _scaled(gen: Generator, lo: float, hi: float):
    while True:
        try:
            f = next(gen)
        except StopIteration as stop:
            return stop.value
        yield lo + (hi - lo) * f


def _ball(radius: int) -> np.ndarray:
    r = int(radius)
    g = np.arange(-r, r + 1)
    return (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r


def _closing_gen(mask: np.ndarray, radius: int, chunk: int | None):
    """Binary closing with a ball, slab by slab; the volume border is extended (edge mode)."""
    if radius < 0:
        raise ValueError(f"closing must be a non-negative radius in voxels, got {radius}")
    nz = mask.shape[0]
    halo = 2 * radius
    chunk = _chunk_for(mask.shape, chunk, halo)
    footprint = _ball(radius)
    out = np.empty_like(mask)
    for z0, z1 in _slabs(nz, chunk):
        a0, b1 = max(0, z0 - halo), min(nz, z1 + halo)
        slab = np.pad(mask[a0:b1], halo, mode="edge")
        closed = ndimage.binary_closing(slab, structure=footprint)
        inner = closed[halo:-halo, halo:-halo, halo:-halo]
        out[z0:z1] = inner[z0 - a0 : z0 - a0 + (z1 - z0)]
        yield z1 / nz
    return out


def particle_mask(
    volume,
    threshold: Threshold = "otsu",
    *,
    closing: int = 0,
    connectivity: int = 1,
    chunk: int | None = None,
    bins: int = 1024,
) -> tuple[np.ndarray, float]:
    """The particle: solid phase plus everything it encloses.

    Voxels ``>= threshold`` form the solid phase; its largest connected component is kept, closed
    with a ball of radius ``closing`` voxels (0: no closing) and every cavity not connected to the
    volume border is filled.

    Parameters
    ----------
    volume : array (z, y, x)
    threshold : "otsu", "li" or float
        Particle threshold (automatic ones on the whole volume's histogram).
    closing : int
        Radius of the closing ball in voxels.
    connectivity : int
        1 (faces), 2 (edges) or 3 (corners) for the solid phase's components.
    chunk : int, optional
        Slices per slab.
    bins : int
        Histogram bins for automatic thresholds.

    Returns
    -------
    mask : bool array
    threshold : float
        The threshold used.
    """
    shape = _check_volume(volume)
    spec = parse_threshold(threshold, "threshold")
    chunk = _chunk_for(shape, chunk)
    buf = np.empty(shape, dtype=np.int32)
    return _drain(_particle_gen(volume, spec, closing, connectivity, chunk, bins, buf))


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


# --------------------------------------------------------------------------------- labelling
def _relabel_min_size(lab: np.ndarray, n: int, min_size: int, chunk: int) -> int:
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= max(1, int(min_size))
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    k = int(keep.sum())
    lut[keep] = np.arange(1, k + 1, dtype=np.int32)
    for z0, z1 in _slabs(lab.shape[0], chunk):
        lab[z0:z1] = lut[lab[z0:z1]]
    return k


def _watershed_gen(lab: np.ndarray, n: int, h: float, min_size: int):
    """Split touching pores: per pore, watershed of the distance map from its h-maxima."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    objects = ndimage.find_objects(lab)
    next_label = n + 1
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        crop = lab[sl]
        obj = crop == i
        if obj.sum() < 2 * max(1, min_size):
            continue
        padded = np.pad(obj, 1)
        dist = ndimage.distance_transform_edt(padded)
        peaks = h_maxima(dist, h) if h > 0 else (dist == dist.max())
        markers, nm = ndimage.label(peaks & padded, structure=_structure(3))
        if nm > 1:
            ws = watershed(-dist, markers, mask=padded)[1:-1, 1:-1, 1:-1]
            sizes = np.bincount(ws[obj], minlength=nm + 1)
            if np.count_nonzero(sizes[1:] >= max(1, min_size)) > 1:
                order = [m for m in range(1, nm + 1) if sizes[m] > 0]
                for j, m in enumerate(order):
                    crop[(ws == m) & obj] = i if j == 0 else next_label
                    if j:
                        next_label += 1
        if i % 64 == 0:
            yield i / max(1, n)
    return next_label - 1


def _label_gen(pores, connectivity, min_size, watershed_split, watershed_h, chunk, labels_buf):
    lab = labels_buf
    n = ndimage.label(pores, structure=_structure(connectivity), output=lab)
    yield 0.4
    n = _relabel_min_size(lab, n, min_size, chunk)
    yield 0.5
    if watershed_split and n:
        n = yield from _scaled(_watershed_gen(lab, n, watershed_h, min_size), 0.5, 0.95)
        n = _relabel_min_size(lab, n, min_size, chunk)
    yield 1.0
    return lab, n


def label_pores(
    pores: np.ndarray,
    *,
    connectivity: int = 1,
    min_size: int = 1,
    watershed: bool = False,
    watershed_h: float = 1.0,
    chunk: int | None = None,
) -> tuple[np.ndarray, int]:
    """3-D connected components of a pore mask, small ones removed, touching ones optionally split.

    Equivalent to ``skimage.measure.label(pores, connectivity=connectivity)`` (same components,
    labels in raster order), computed with ``scipy.ndimage.label`` into an ``int32`` array.

    Parameters
    ----------
    pores : bool array (z, y, x)
    connectivity : int
        1 (faces, default), 2 (edges) or 3 (corners).
    min_size : int
        Components with fewer voxels are removed.
    watershed : bool
        Split touching pores by a watershed of the distance map.
    watershed_h : float
        Minimum depth (voxels of distance) of a maximum to seed its own pore.
    chunk : int, optional
        Slices per slab for the relabelling passes.

    Returns
    -------
    labels : int32 array
        0 outside pores, 1..n sequential.
    n : int
    """
    pores = np.asarray(pores)
    _check_volume(pores, "pores")
    if int(min_size) < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    chunk = _chunk_for(pores.shape, chunk)
    buf = np.empty(pores.shape, dtype=np.int32)
    return _drain(
        _label_gen(
            pores.astype(bool, copy=False),
            connectivity,
            int(min_size),
            watershed,
            float(watershed_h),
            chunk,
            buf,
        )
    )


# ------------------------------------------------------------------------------------- table
TABLE_COLUMNS = (
    "label",
    "volume_voxels",
    "volume",
    "equivalent_diameter_voxels",
    "equivalent_diameter",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "surface_area",
    "sphericity",
    "touches_surface",
)


def _voxel_size(voxel_size) -> tuple[float, float, float]:
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    vs = np.atleast_1d(np.asarray(voxel_size, dtype=np.float64))
    if vs.size == 1:
        vs = np.repeat(vs, 3)
    if vs.shape != (3,) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(
            f"voxel_size must be a positive number or three (z, y, x), got {voxel_size!r}"
        )
    return tuple(float(v) for v in vs)


def _mesh_area_volume(obj: np.ndarray, spacing) -> tuple[float, float]:
    from skimage.measure import marching_cubes, mesh_surface_area

    padded = np.pad(obj, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    area = float(mesh_surface_area(verts, faces))
    tri = verts[faces]
    vol = float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6)
    return area, vol


def _table_gen(labels, n, mask, voxel_size):
    shape = labels.shape
    vs = _voxel_size(voxel_size)
    voxel_volume = vs[0] * vs[1] * vs[2]
    cols: dict[str, list] = {c: [] for c in TABLE_COLUMNS}
    objects = ndimage.find_objects(labels, max_label=n) if n else []
    struct = _structure(1)
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        starts = [s.start for s in sl]
        stops = [s.stop for s in sl]
        ext = tuple(slice(max(0, a - 1), min(d, b + 1)) for a, b, d in zip(starts, stops, shape))
        obj = labels[ext] == i
        idx = np.nonzero(obj)
        count = idx[0].size
        centroid = [float(idx[k].mean()) + ext[k].start for k in range(3)]
        at_border = any(a == 0 for a in starts) or any(b == d for b, d in zip(stops, shape))
        if at_border:
            touches = True
        else:
            touches = bool(np.any(ndimage.binary_dilation(obj, struct) & ~mask[ext]))
        area, mesh_vol = _mesh_area_volume(obj, vs)
        sph = (math.pi ** (1 / 3)) * (6 * mesh_vol) ** (2 / 3) / area if area > 0 else float("nan")
        vol = count * voxel_volume
        cols["label"].append(i)
        cols["volume_voxels"].append(count)
        cols["volume"].append(vol)
        cols["equivalent_diameter_voxels"].append((6 * count / math.pi) ** (1 / 3))
        cols["equivalent_diameter"].append((6 * vol / math.pi) ** (1 / 3))
        for k, ax in enumerate("zyx"):
            cols[f"centroid_{ax}"].append(centroid[k])
            cols[f"bbox_{ax}0"].append(starts[k])
            cols[f"bbox_{ax}1"].append(stops[k])
        cols["surface_area"].append(area)
        cols["sphericity"].append(sph)
        cols["touches_surface"].append(touches)
        if i % 32 == 0:
            yield i / n
    dtypes = {
        "label": np.int32,
        "volume_voxels": np.int64,
        "touches_surface": bool,
        **{f"bbox_{a}{e}": np.int64 for a in "zyx" for e in "01"},
    }
    return {c: np.asarray(v, dtype=dtypes.get(c, np.float64)) for c, v in cols.items()}


def pore_table(labels: np.ndarray, mask: np.ndarray, voxel_size=None) -> dict[str, np.ndarray]:
    """Per-pore measurements, one row per label ``1..labels.max()`` present.

    Columns (``TABLE_COLUMNS``): ``label``; ``volume_voxels`` and ``volume`` (physical units cubed,
    equal to voxels when ``voxel_size`` is None); ``equivalent_diameter_voxels`` and
    ``equivalent_diameter`` (diameter of the ball of the same volume); ``centroid_z/y/x`` (voxel
    indices); ``bbox_z0 .. bbox_x1`` (half-open index box); ``surface_area`` and ``sphericity``
    (``pi^(1/3) (6 V)^(2/3) / A`` of the marching-cubes surface, 1 for a ball);
    ``touches_surface`` (an *open* pore: next to a voxel outside the particle mask or at the
    volume border).

    Parameters
    ----------
    labels : int array (z, y, x)
    mask : bool array
        The particle mask.
    voxel_size : float or (z, y, x), optional
        Physical voxel size.
    """
    labels = np.asarray(labels)
    _check_volume(labels, "labels")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if tuple(mask.shape) != tuple(labels.shape):
        raise ValueError(f"mask must have the labels' shape {labels.shape}, got {mask.shape}")
    return _drain(_table_gen(labels, int(labels.max(initial=0)), mask, voxel_size))


def pore_size_distribution(
    diameters: np.ndarray, bins: int | np.ndarray | str = "auto", weights: str = "count"
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of pore diameters.

    Parameters
    ----------
    diameters : array
        Equivalent diameters.
    bins : int, array or str
        As ``numpy.histogram``.
    weights : {"count", "volume"}
        Count pores, or sum their volumes (``pi d^3 / 6``) per bin.

    Returns
    -------
    values, edges : arrays
    """
    d = np.asarray(diameters, dtype=np.float64)
    if weights not in ("count", "volume"):
        raise ValueError(f"weights must be 'count' or 'volume', got {weights!r}")
    w = None if weights == "count" else np.pi * d**3 / 6
    if d.size == 0:
        return np.zeros(1), np.array([0.0, 1.0])
    return np.histogram(d, bins=bins, weights=w)


# ----------------------------------------------------------------------------------- preview
def estimate_thresholds(
    volume,
    particle_threshold: Threshold = "otsu",
    pore_threshold: Threshold = "otsu",
    *,
    max_voxels: int = 2_000_000,
    bins: int = 1024,
) -> tuple[float, float]:
    """Particle and pore thresholds as :func:`iter_segment` would use them, fast.

    Automatic thresholds are computed on a strided subsample of at most ``max_voxels`` voxels (the
    whole volume when it is smaller), so a live preview can follow parameter changes.

    Returns
    -------
    (particle_threshold, pore_threshold) : floats
    """
    shape = _check_volume(volume)
    pspec = parse_threshold(particle_threshold, "particle_threshold")
    qspec = parse_threshold(pore_threshold, "pore_threshold")
    step = max(1, int(math.ceil((np.prod(shape, dtype=np.float64) / max_voxels) ** (1 / 3))))
    sub = np.asarray(volume[::step, ::step, ::step], dtype=np.float32)
    if min(sub.shape) < 2:
        sub = np.asarray(volume, dtype=np.float32)
    mask, pthr = particle_mask(sub, pspec, bins=bins)
    if isinstance(qspec, str):
        qthr = min(compute_pore_threshold(sub, mask, qspec, bins=bins), pthr)
    else:
        qthr = float(qspec)
    return float(pthr), float(qthr)


def preview_slice(
    image: np.ndarray, particle_threshold: float, pore_threshold: float
) -> np.ndarray:
    """A 2-D preview of the segmentation of one slice: 0 air, 1 particle, 2 pore.

    The particle is the slice's largest solid component with its holes filled in 2-D (the 3-D
    run fills holes in 3-D, so pores cut by the slice look the same).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    solid = img >= float(particle_threshold)
    out = np.zeros(img.shape, dtype=np.uint8)
    lab, n = ndimage.label(solid)
    if n == 0:
        return out
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    part = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    out[part] = 1
    out[part & (img < float(pore_threshold))] = 2
    return out


# ------------------------------------------------------------------------------------ result
@dataclass
class SegmentationResult:
    """Labels, particle mask, thresholds, the pore table and totals."""

    labels: np.ndarray
    particle_mask: np.ndarray
    table: dict[str, np.ndarray]
    particle_threshold: float
    pore_threshold: float
    particle_volume_voxels: int
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    params: dict = field(default_factory=dict)

    @property
    def pore_count(self) -> int:
        return int(self.table["label"].size)

    @property
    def pore_volume_voxels(self) -> int:
        return int(self.table["volume_voxels"].sum())

    @property
    def porosity(self) -> float:
        """Pore volume / particle volume (particle = solid + every pore)."""
        return self.pore_volume_voxels / max(1, self.particle_volume_voxels)

    @property
    def open_porosity(self) -> float:
        t = self.table
        return int(t["volume_voxels"][t["touches_surface"]].sum()) / max(
            1, self.particle_volume_voxels
        )

    @property
    def closed_porosity(self) -> float:
        return self.porosity - self.open_porosity

    @property
    def voxel_volume(self) -> float:
        return float(np.prod(self.voxel_size))

    def size_distribution(self, bins="auto", weights: str = "count"):
        """Equivalent-diameter histogram (physical units); see :func:`pore_size_distribution`."""
        return pore_size_distribution(self.table["equivalent_diameter"], bins, weights)

    def summary(self) -> dict[str, float]:
        """Totals as a flat dict (porosity in [0, 1])."""
        return {
            "porosity": self.porosity,
            "open_porosity": self.open_porosity,
            "closed_porosity": self.closed_porosity,
            "pore_count": self.pore_count,
            "pore_volume_voxels": self.pore_volume_voxels,
            "particle_volume_voxels": self.particle_volume_voxels,
            "particle_volume": self.particle_volume_voxels * self.voxel_volume,
            "particle_threshold": self.particle_threshold,
            "pore_threshold": self.pore_threshold,
        }


def _validate_options(
    denoise, denoise_strength, closing, min_size, connectivity, watershed_h, bins
):
    if denoise is not None and denoise not in DENOISE_METHODS:
        raise ValueError(f"denoise must be None or one of {DENOISE_METHODS}, got {denoise!r}")
    if denoise_strength is not None and not (
        isinstance(denoise_strength, (int, float)) and denoise_strength > 0
    ):
        raise ValueError(f"denoise_strength must be a positive number, got {denoise_strength!r}")
    if not (isinstance(closing, (int, np.integer)) and closing >= 0):
        raise ValueError(f"closing must be a non-negative integer radius, got {closing!r}")
    if not (isinstance(min_size, (int, np.integer)) and min_size >= 0):
        raise ValueError(f"min_size must be a non-negative integer, got {min_size!r}")
    _structure(connectivity)
    if not (isinstance(watershed_h, (int, float)) and watershed_h >= 0):
        raise ValueError(f"watershed_h must be >= 0, got {watershed_h!r}")
    if not (isinstance(bins, (int, np.integer)) and bins >= 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


def iter_segment(
    volume,
    *,
    denoise: str | None = None,
    denoise_strength: float | None = None,
    particle_threshold: Threshold = "otsu",
    pore_threshold: Threshold = "otsu",
    closing: int = 0,
    min_size: int = 8,
    connectivity: int = 1,
    watershed: bool = False,
    watershed_h: float = 1.0,
    voxel_size=None,
    chunk: int | None = None,
    inplace: bool = False,
    bins: int = 1024,
) -> Generator[SegmentProgress, None, SegmentationResult]:
    """Segment pores in 3-D, yielding :class:`SegmentProgress` records; returns the result.

    Use ``result = yield from iter_segment(...)`` or a napari generator worker (its ``returned``
    signal carries the result); :func:`segment` runs it to the end. Closing the generator stops
    the run between steps.

    Parameters
    ----------
    volume : array (z, y, x)
        Reconstructed volume (numpy array, memmap, zarr or h5py dataset).
    denoise : {None, "gaussian", "median", "nlm"}
        Denoising before thresholding.
    denoise_strength : float, optional
        Sigma (gaussian), window (median) or h / noise sigma (nlm); see :func:`denoise_volume`.
    particle_threshold : "otsu", "li" or float
        Solid phase threshold (automatic: on the whole volume's histogram).
    pore_threshold : "otsu", "li" or float
        Pore threshold (automatic: on the histogram inside the particle mask, values above its
        median clipped). An automatic pore threshold is capped at the particle threshold so that
        the particle's own blurred surface is never counted as pores.
    closing : int
        Radius (voxels) of a closing of the particle mask; open pores narrower than about twice it
        become part of the particle (and count as pores touching the surface).
    min_size : int
        Smallest pore kept, in voxels.
    connectivity : int
        Connectivity of pores (1 faces, 2 edges, 3 corners).
    watershed : bool
        Split touching pores.
    watershed_h : float
        Minimum depth of a distance-map maximum seeding its own pore (voxels).
    voxel_size : float or (z, y, x), optional
        Physical voxel size for the ``volume`` and ``equivalent_diameter`` columns.
    chunk : int, optional
        Slices per slab (default: ~16 MB of float32 per slab).
    inplace : bool
        Denoise into ``volume`` itself (a writable float32 numpy array) instead of a new array.
    bins : int
        Histogram bins for automatic thresholds.
    """
    shape = _check_volume(volume)
    pspec = parse_threshold(particle_threshold, "particle_threshold")
    qspec = parse_threshold(pore_threshold, "pore_threshold")
    _validate_options(denoise, denoise_strength, closing, min_size, connectivity, watershed_h, bins)
    vs = _voxel_size(voxel_size)
    chunk = _chunk_for(shape, chunk)
    params = dict(
        denoise=denoise,
        denoise_strength=denoise_strength,
        particle_threshold=pspec,
        pore_threshold=qspec,
        closing=int(closing),
        min_size=int(min_size),
        connectivity=connectivity,
        watershed=bool(watershed),
        watershed_h=float(watershed_h),
        voxel_size=vs,
    )
    nz = shape[0]
    w0 = 0.0
    if denoise is not None:
        yield SegmentProgress("denoise", 0.0, f"denoising ({denoise})")
        if inplace:
            if not (
                isinstance(volume, np.ndarray)
                and volume.dtype == np.float32
                and volume.flags.writeable
            ):
                raise ValueError("inplace=True needs volume to be a writable float32 numpy array")
            out = volume
        else:
            out = np.empty(shape, dtype=np.float32)
        volume = yield from _staged(
            _denoise_gen(volume, denoise, denoise_strength, chunk, out),
            "denoise",
            0.0,
            0.25,
            f"denoising ({denoise})",
        )
        w0 = 0.25
    span = 1.0 - w0
    buf = np.empty(shape, dtype=np.int32)
    yield SegmentProgress("particle", w0, "particle mask")
    mask, pthr = yield from _staged(
        _particle_gen(volume, pspec, int(closing), 1, chunk, bins, buf),
        "particle",
        w0,
        w0 + 0.35 * span,
        "particle mask",
    )
    lo = w0 + 0.35 * span
    yield SegmentProgress("pores", lo, "pore threshold")
    if isinstance(qspec, str):
        qthr = yield from _staged(
            _pore_threshold_gen(volume, mask, qspec, chunk, bins),
            "pores",
            lo,
            lo + 0.1 * span,
            "pore threshold",
        )
        qthr = min(qthr, pthr)
    else:
        qthr = float(qspec)
        if qthr > pthr:
            warnings.warn(
                f"pore_threshold {qthr:.6g} is above the particle threshold {pthr:.6g}: the "
                "particle's surface layer between them will count as open pores",
                stacklevel=2,
            )
    pores = np.empty(shape, dtype=bool)
    for z0, z1 in _slabs(nz, chunk):
        np.less(_read(volume, z0, z1), qthr, out=pores[z0:z1])
        np.logical_and(pores[z0:z1], mask[z0:z1], out=pores[z0:z1])
    lo += 0.15 * span
    stage = "watershed" if watershed else "pores"
    labels, n = yield from _staged(
        _label_gen(pores, connectivity, int(min_size), watershed, float(watershed_h), chunk, buf),
        stage,
        lo,
        lo + 0.2 * span,
        "labelling pores",
    )
    del pores
    lo += 0.2 * span
    yield SegmentProgress("table", lo, f"measuring {n} pores")
    table = yield from _staged(_table_gen(labels, n, mask, vs), "table", lo, 0.999, "measuring")
    particle_voxels = 0
    for z0, z1 in _slabs(nz, chunk):
        particle_voxels += int(np.count_nonzero(mask[z0:z1]))
    result = SegmentationResult(
        labels=labels,
        particle_mask=mask,
        table=table,
        particle_threshold=float(pthr),
        pore_threshold=float(qthr),
        particle_volume_voxels=particle_voxels,
        voxel_size=vs,
        params=params,
    )
    yield SegmentProgress(
        "done", 1.0, f"{result.pore_count} pores, porosity {100 * result.porosity:.2f} %"
    )
    return result


def segment(
    volume, *, progress: Callable[[SegmentProgress], None] | None = None, **kwargs
) -> SegmentationResult:
    """Run :func:`iter_segment` to the end; ``progress`` is called with each record.

    Examples
    --------
    >>> from napari_ganrec import phantoms, segment
    >>> vol = phantoms.porous_particle(48, nz=48, seed=0).rasterize()
    >>> res = segment.segment(vol)
    >>> round(100 * res.porosity, 1), res.pore_count  # doctest: +SKIP
    """
    gen = iter_segment(volume, **kwargs)
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(rec)


# ------------------------------------------------------------------------------------ export
def _atomic_target(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    if not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    return path


def _atomic_write(path: Path, write: Callable[[str], None], suffix: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_table_csv(table: dict[str, np.ndarray], path, *, overwrite: bool = False) -> Path:
    """Write the pore table as CSV (header row; atomic; refuses to overwrite unless asked)."""
    path = _atomic_target(path, overwrite)
    cols = list(table)
    n = len(next(iter(table.values()))) if cols else 0

    def fmt(v) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        return repr(float(v))

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(cols) + "\n")
            for r in range(n):
                fh.write(",".join(fmt(table[c][r]) for c in cols) + "\n")

    _atomic_write(path, write, ".csv")
    return path


def save_labels_tiff(labels: np.ndarray, path, *, overwrite: bool = False, voxel_size=None) -> Path:
    """Write a label (or mask) volume as a TIFF (atomic; refuses to overwrite unless asked)."""
    import tifffile

    path = _atomic_target(path, overwrite)
    data = np.asarray(labels)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    metadata: dict = {"axes": "ZYX"} if data.ndim == 3 else {}
    if voxel_size is not None:
        metadata["voxel_size_zyx"] = list(_voxel_size(voxel_size))
    kw = dict(metadata=metadata)

    def write(tmp: str) -> None:
        tifffile.imwrite(tmp, data, **kw)

    _atomic_write(path, write, ".tif")
    return path
