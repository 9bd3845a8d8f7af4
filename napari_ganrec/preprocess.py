"""Pre-processing of projection stacks: flat/dark normalisation, -log, zingers, crop, bin, axes.

Pure numpy, batched over whole stacks ``(n_angles, n_rows, n_det)`` (a single frame
``(n_rows, n_det)`` works too where it makes sense). Nothing here modifies its input.

Typical chain::

    t = normalize(proj, flats, darks)          # transmission in (0, 1], never <= 0
    p = minus_log(t)                           # line integrals
    p = remove_zingers(p, threshold=0.3)       # optional
    p = bin_stack(crop(p, cols=(10, -10)), 2)  # optional
    sino = to_sinograms(p)                     # (n_rows, n_angles, n_det) for reconstruct()
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "normalize",
    "check_flats_darks",
    "minus_log",
    "remove_zingers",
    "crop",
    "bin_stack",
    "to_sinograms",
    "to_projections",
    "orient_axis",
    "preprocess",
]


def _as_float_stack(arr, name: str) -> np.ndarray:
    try:
        a = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from None
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be (n_rows, n_det) or (n, n_rows, n_det), got {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return a


def _reference(field, frame_shape, name: str) -> np.ndarray | None:
    """Average flat or dark frame ``(n_rows, n_det)``; ``field`` may be one frame or a stack."""
    if field is None:
        return None
    f = _as_float_stack(field, name)
    ref = f if f.ndim == 2 else np.mean(f, axis=0, dtype=np.float64).astype(np.float32)
    if ref.shape != tuple(frame_shape):
        raise ValueError(
            f"{name} have frames of shape {ref.shape} but the projections have "
            f"{tuple(frame_shape)}; flats and darks must come from the same detector region "
            "and binning"
        )
    return ref


def check_flats_darks(projections, flat, dark=None, *, max_bad_fraction: float | None = 0.01,
                      max_below_fraction: float | None = 0.05) -> tuple[int, int]:
    """Refuse flats and darks that cannot normalise ``projections``.

    Parameters
    ----------
    projections : numpy.ndarray
        Raw counts ``(..., n_rows, n_det)``.
    flat, dark : numpy.ndarray
        The averaged flat and dark frames ``(n_rows, n_det)`` (dark None: zero).
    max_bad_fraction : float or None
        Largest fraction of the flat pixels that may be not above the dark (dead pixels) before it
        is an error; None: no limit (only the whole-field checks).
    max_below_fraction : float or None
        Largest fraction of the projection pixels that may be at or below the dark (noise in
        opaque regions) before it is an error; None: no limit.

    Returns
    -------
    (int, int)
        Number of projection pixels at or below the dark, and of flat pixels not above it (both
        floored by :func:`normalize`).

    Raises
    ------
    ValueError
        All-zero flats; darks brighter than the flats (median); more bad pixels than allowed.
    """
    flat = np.asarray(flat, dtype=np.float32)
    dark = np.zeros_like(flat) if dark is None else np.asarray(dark, dtype=np.float32)
    if not np.any(flat):
        raise ValueError("the flats are all zero (no beam when they were taken?); give the open-beam images "
                         "as flats")
    span = flat - dark
    if float(np.median(span)) <= 0:
        raise ValueError(
            f"the darks are brighter than the flats (median flat {float(np.median(flat)):.6g}, median dark "
            f"{float(np.median(dark)):.6g}); are flats and darks swapped?"
        )
    not_above = int(np.count_nonzero(span <= 0))
    below = int(np.count_nonzero(np.asarray(projections, dtype=np.float32) - dark <= 0))
    if max_bad_fraction is not None:
        if not_above > max_bad_fraction * span.size:
            raise ValueError(
                f"in {not_above} of {span.size} pixels the flat is not brighter than the dark; the flats or "
                "darks come from another exposure or detector region"
            )
    n = int(np.size(projections))
    if max_below_fraction is not None and below > max_below_fraction * n:
        raise ValueError(
            f"{below} of {n} raw counts are at or below the dark (median projection "
            f"{float(np.median(projections)):.6g}, median dark {float(np.median(dark)):.6g}); the darks do "
            "not belong to these projections (other exposure or gain?), or the data are not raw counts "
            "(if large opaque regions are really there, crop them away)"
        )
    return below, not_above


def normalize(
    projections,
    flats=None,
    darks=None,
    *,
    dark_floor: float = 0.0,
    min_transmission: float = 1e-6,
    max_transmission: float | None = None,
) -> np.ndarray:
    """Flat/dark correction: ``(P - D) / (F - D)``, safe for the logarithm.

    Parameters
    ----------
    projections : array-like
        Raw counts ``(n_angles, n_rows, n_det)`` or one frame ``(n_rows, n_det)``.
    flats, darks : array-like, optional
        Flat-field and dark-field frames ``(n, n_rows, n_det)`` or one averaged frame; they are
        averaged over their first axis. Missing flats: the projections are taken as relative
        to one; missing darks: zero.
    dark_floor : float
        ``P - D`` and ``F - D`` are floored at this many counts (>= 0), so pixels darker than the
        dark field (noise, dead pixels) never give zero or negative ratios. The flat term is
        floored at ``max(dark_floor, tiny)`` so no division by zero happens.
    min_transmission : float
        Lower clip of the result (> 0): no log of zero or negative values, ever.
    max_transmission : float, optional
        Upper clip (e.g. 1.0 to cut values brighter than the flat); default no upper clip.

    Returns
    -------
    numpy.ndarray
        Transmission, float32, same shape as ``projections``, in
        ``[min_transmission, max_transmission]``.

    Raises
    ------
    ValueError
        Non-finite input, flats or darks whose frame shape differs from the projections', bad
        clip values, all-zero flats, darks brighter than the flats (see :func:`check_flats_darks`).

    Warns
    -----
    UserWarning
        When pixels at or below the dark are floored (their count is given).
    """
    if not min_transmission > 0:
        raise ValueError(f"min_transmission must be > 0, got {min_transmission}")
    if max_transmission is not None and max_transmission <= min_transmission:
        raise ValueError(
            f"max_transmission ({max_transmission}) must exceed "
            f"min_transmission ({min_transmission})"
        )
    if dark_floor < 0:
        raise ValueError(f"dark_floor must be >= 0 counts, got {dark_floor}")
    p = _as_float_stack(projections, "projections")
    frame = p.shape[-2:]
    flat = _reference(flats, frame, "flats")
    dark = _reference(darks, frame, "darks")
    if dark is None:
        dark = np.zeros(frame, dtype=np.float32)
    if flat is not None:
        below, not_above = check_flats_darks(p, flat, dark, max_bad_fraction=None, max_below_fraction=None)
        if below or not_above:
            warnings.warn(f"normalize: {below} projection pixel(s) at or below the dark and {not_above} flat "
                          f"pixel(s) not above it are floored (transmission >= {min_transmission:g})",
                          UserWarning, stacklevel=2)
    num = np.maximum(p - dark, dark_floor)
    if flat is None:
        out = num
    else:
        den = np.maximum(flat - dark, max(dark_floor, 1e-6))
        out = num / den
    return np.clip(out, min_transmission, max_transmission).astype(np.float32, copy=False)


def minus_log(transmission, *, min_transmission: float = 1e-6) -> np.ndarray:
    """Line integrals ``-log(T)``, with ``T`` clipped below at ``min_transmission`` (> 0)."""
    if not min_transmission > 0:
        raise ValueError(f"min_transmission must be > 0, got {min_transmission}")
    t = np.asarray(transmission, dtype=np.float32)
    if not np.all(np.isfinite(t)):
        raise ValueError("transmission contains NaN or infinite values")
    return (-np.log(np.maximum(t, min_transmission))).astype(np.float32)


def remove_zingers(stack, threshold: float = 0.1, size: int = 3, relative: bool = False):
    """Replace outliers (zingers, hot pixels) by the local median of their frame.

    A pixel is replaced when it exceeds the ``size x size`` median of its own frame by more
    than ``threshold`` (in data units, or as a fraction of ``|median|`` when ``relative``).
    Only bright outliers are replaced, as zingers are always bright in raw counts; apply it
    before ``-log`` to raw data or to line integrals for dark ones (use ``-stack``).

    Returns
    -------
    numpy.ndarray
        A float32 copy with the outliers replaced.
    """
    from scipy.ndimage import median_filter

    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd number >= 3, got {size}")
    a = _as_float_stack(stack, "stack")
    a3 = a if a.ndim == 3 else a[None]
    med = median_filter(a3, size=(1, size, size), mode="reflect")
    limit = threshold * np.abs(med) if relative else threshold
    out = np.where(a3 - med > limit, med, a3).astype(np.float32)
    return out if a.ndim == 3 else out[0]


def _norm_range(r, n: int, name: str) -> slice:
    if r is None:
        return slice(0, n)
    if isinstance(r, slice):
        start, stop, step = r.indices(n)
        if step != 1:
            raise ValueError(f"{name}: crop ranges take no step, got {r}")
    else:
        try:
            start, stop = (int(v) for v in r)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be (start, stop) or a slice, got {r!r}") from None
        start, stop, _ = slice(start, stop).indices(n)
    if stop <= start:
        raise ValueError(f"{name} {r!r} selects nothing out of {n}")
    return slice(start, stop)


def crop(stack, rows=None, cols=None, angles=None):
    """Crop a stack ``(n_angles, n_rows, n_det)``: ``rows``/``cols``/``angles`` are ``(start,
    stop)`` (Python slice semantics, negative allowed) or slices; None keeps all.

    Works on lazy arrays: only the cropped part is read.
    """
    shape = stack.shape
    if len(shape) != 3:
        raise ValueError(f"stack must be (n_angles, n_rows, n_det), got shape {tuple(shape)}")
    sa = _norm_range(angles, shape[0], "angles")
    sr = _norm_range(rows, shape[1], "rows")
    sc = _norm_range(cols, shape[2], "cols")
    return np.asarray(stack[sa, sr, sc])


def bin_stack(stack, factor=2, angle_factor: int = 1) -> np.ndarray:
    """Average ``factor x factor`` detector pixels (``factor`` may be ``(rows, cols)``) and,
    optionally, ``angle_factor`` consecutive projections. Remainders at the end are dropped.

    Binning takes the mean, so line integrals keep their values; the reconstruction pixel grows
    by the factor, so a reconstruction of binned data is ``factor`` times the unbinned value
    per pixel (the attenuation per binned pixel).
    """
    a = np.asarray(stack, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"stack must be (n_angles, n_rows, n_det), got shape {a.shape}")
    fr, fc = (factor, factor) if np.isscalar(factor) else tuple(factor)
    fa = int(angle_factor)
    for name, f in (("factor", fr), ("factor", fc), ("angle_factor", fa)):
        if int(f) != f or f < 1:
            raise ValueError(f"{name} must be a positive integer, got {f}")
    fr, fc = int(fr), int(fc)
    na, nr, nc = a.shape[0] // fa, a.shape[1] // fr, a.shape[2] // fc
    if min(na, nr, nc) < 1:
        raise ValueError(f"binning {(fa, fr, fc)} is larger than the stack {a.shape}")
    a = a[: na * fa, : nr * fr, : nc * fc]
    return a.reshape(na, fa, nr, fr, nc, fc).mean(axis=(1, 3, 5)).astype(np.float32)


def bin_angles(angles, angle_factor: int) -> np.ndarray:
    """The angles matching :func:`bin_stack` with ``angle_factor`` (mean of each group)."""
    a = np.asarray(angles, dtype=np.float64)
    n = a.size // int(angle_factor)
    return a[: n * angle_factor].reshape(n, angle_factor).mean(axis=1)


def to_sinograms(projections) -> np.ndarray:
    """Projection stack ``(n_angles, n_rows, n_det)`` -> sinograms ``(n_rows, n_angles, n_det)``
    (contiguous float32). A single frame ``(n_angles, n_det)`` is returned as one sinogram."""
    a = np.asarray(projections, dtype=np.float32)
    if a.ndim == 2:
        return np.ascontiguousarray(a)
    if a.ndim != 3:
        raise ValueError(f"projections must be (n_angles, n_rows, n_det), got shape {a.shape}")
    return np.ascontiguousarray(a.transpose(1, 0, 2))


def to_projections(sinograms) -> np.ndarray:
    """Sinograms ``(n_rows, n_angles, n_det)`` -> projection stack ``(n_angles, n_rows, n_det)``."""
    a = np.asarray(sinograms, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"sinograms must be (n_rows, n_angles, n_det), got shape {a.shape}")
    return np.ascontiguousarray(a.transpose(1, 0, 2))


def orient_axis(stack, axis: str = "vertical", flip: bool = False, rotate_deg: float = 0.0):
    """Bring the rotation (tilt) axis parallel to the detector rows axis (axis 1).

    Parameters
    ----------
    stack : array-like
        ``(n_angles, a, b)`` projections as recorded.
    axis : {"vertical", "horizontal"}
        Where the rotation axis runs in the recorded images: ``"vertical"`` (along axis 1, the
        convention here: nothing to do) or ``"horizontal"`` (along axis 2: the frames are
        transposed).
    flip : bool
        Mirror the detector axis (for a rotation sense opposite to the convention).
    rotate_deg : float
        Small in-plane rotation (degrees, counter-clockwise) applied to each frame first, to
        correct an axis that is tilted on the detector.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_angles, n_rows, n_det)`` with rows along the axis.
    """
    a = np.asarray(stack, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"stack must be (n_angles, n_rows, n_det), got shape {a.shape}")
    if axis not in ("vertical", "horizontal"):
        raise ValueError(f"axis must be 'vertical' or 'horizontal', got {axis!r}")
    if rotate_deg:
        from scipy.ndimage import rotate

        a = rotate(a, rotate_deg, axes=(2, 1), reshape=False, order=1, mode="nearest")
    if axis == "horizontal":
        a = a.transpose(0, 2, 1)
    if flip:
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a, dtype=np.float32)


def preprocess(
    projections,
    flats=None,
    darks=None,
    *,
    log: bool = True,
    zinger_threshold: float | None = None,
    zinger_relative: bool = True,
    rows=None,
    cols=None,
    bin_factor: int = 1,
    axis: str = "vertical",
    dark_floor: float = 0.0,
    min_transmission: float = 1e-6,
) -> np.ndarray:
    """The whole chain in the usual order: axis, crop, zingers (on raw counts), flat/dark,
    ``-log``, binning. Returns a new float32 projection stack; the input is never modified.
    """
    p = orient_axis(projections, axis)
    if flats is not None:
        flats = orient_axis(np.asarray(flats, dtype=np.float32)[None] if np.ndim(flats) == 2
                            else flats, axis)
    if darks is not None:
        darks = orient_axis(np.asarray(darks, dtype=np.float32)[None] if np.ndim(darks) == 2
                            else darks, axis)
    if rows is not None or cols is not None:
        p = crop(p, rows, cols)
        flats = None if flats is None else crop(flats, rows, cols)
        darks = None if darks is None else crop(darks, rows, cols)
    if zinger_threshold is not None:
        p = remove_zingers(p, zinger_threshold, relative=zinger_relative)
    if flats is not None or darks is not None or log:
        p = normalize(p, flats, darks, dark_floor=dark_floor, min_transmission=min_transmission)
    if log:
        p = minus_log(p, min_transmission=min_transmission)
    if bin_factor > 1:
        p = bin_stack(p, bin_factor)
    return p
