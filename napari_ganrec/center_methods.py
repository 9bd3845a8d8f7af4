"""Automatic centre-of-rotation algorithms that need no reconstruction: Vo's Fourier double-wedge
method (180 degree scans), phase correlation of opposite projections (360 degrees) and the
sinusoid fit of the projections' centre of mass (any range).

Same convention as :mod:`napari_ganrec.center`, which re-exports these functions and chooses
among them (:func:`napari_ganrec.center.estimate_center`); the reconstruction-based scan and
its sharpness metrics stay there.
"""

from __future__ import annotations

import numpy as np

from .geometry import validate_angles, validate_sinogram

__all__ = ["find_center_vo", "find_center_pc", "find_center_com"]


def _check(sinogram, angles) -> tuple[np.ndarray, np.ndarray]:
    """One validated sinogram slice ``(n_angles, n_det)`` and its angles (also used by :mod:`.center`)."""
    s = validate_sinogram(sinogram)
    if s.ndim != 2:
        raise ValueError(f"sinogram must be one slice (n_angles, n_det), got shape {s.shape}")
    a = validate_angles(angles, s.shape[0])
    return s, a


def _parabolic_peak(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Sub-step position of the extremum at index ``k`` by a parabola through 3 points."""
    if k <= 0 or k >= len(x) - 1:
        return float(x[k])
    y0, y1, y2 = y[k - 1], y[k], y[k + 1]
    den = y0 - 2 * y1 + y2
    if den == 0:
        return float(x[k])
    off = 0.5 * (y0 - y2) / den
    return float(x[k] + np.clip(off, -1, 1) * (x[k + 1] - x[k]))


def _vo_mask(nrow: int, ncol: int, radius: float, drop: int) -> np.ndarray:
    """Binary mask of the Fourier coefficients outside the double wedge of a 360 degree
    sinogram (``nrow`` rows spanning 360 degrees) of an object of ``radius`` pixels."""
    du = 1.0 / ncol
    dv = (nrow - 1.0) / (nrow * 2.0 * np.pi)
    cen_row = int(np.ceil(nrow / 2.0) - 1)
    cen_col = int(np.ceil(ncol / 2.0) - 1)
    drop = min(drop, int(np.ceil(0.05 * nrow)))
    rows = np.arange(nrow)
    half = np.ceil(np.abs(rows - cen_row) * dv / radius / du).astype(int)
    cols = np.arange(ncol)
    mask = (np.abs(cols[None, :] - cen_col) <= half[:, None]).astype(np.float32)
    mask[max(cen_row - drop, 0) : cen_row + drop + 1, :] = 0.0
    mask[:, max(cen_col - 1, 0) : cen_col + 2] = 0.0
    return mask


def _vo_metric(sino: np.ndarray, flipped: np.ndarray, shift: float, mask: np.ndarray) -> float:
    from scipy.ndimage import shift as nd_shift

    integer = abs(shift - round(shift)) < 1e-9
    moved = nd_shift(flipped, (0, round(shift) if integer else shift), order=1 if integer else 3,
                     mode="nearest")
    joined = np.vstack((sino, moved))
    return float(np.mean(np.abs(np.fft.fftshift(np.fft.fft2(joined))) * mask))


def find_center_vo(
    sinogram,
    angles=None,
    search: tuple[float, float] | None = None,
    *,
    fine_step: float = 0.25,
    ratio: float = 0.5,
    drop: int = 20,
) -> float:
    """Vo's Fourier double-wedge method for a sinogram covering 180 degrees.

    Parameters
    ----------
    sinogram : array-like
        ``(n_angles, n_det)`` over 180 degrees (angles uniformly spaced).
    angles : array-like, optional
        Checked for the count and a ~180 degree span when given.
    search : (float, float), optional
        Centres to try (default: the middle half of the detector).
    fine_step : float
        Step of the fine search in pixels.
    ratio : float
        Object radius as a fraction of half the detector width (sets the wedge).
    drop : int
        Rows around the zero frequency left out of the metric.

    Returns
    -------
    float
        The centre in detector pixels.
    """
    from scipy.ndimage import gaussian_filter

    if angles is not None:
        s, a = _check(sinogram, angles)
        step = np.median(np.abs(np.diff(a))) if a.size > 1 else 0
        if not 170 <= np.ptp(a) + step <= 190:
            raise ValueError(
                f"find_center_vo needs a scan over 180 degrees; these angles span {np.ptp(a):.1f}"
                " (use find_center_pc for 360 degrees, find_center_sharpness for limited angles)"
            )
        order = np.argsort(a)
        s = s[order]
    else:
        s = validate_sinogram(sinogram)
    nrow, ncol = s.shape
    cen_flip = (ncol - 1.0) / 2.0
    lo, hi = search if search is not None else (0.25 * ncol, 0.75 * ncol)
    mask = _vo_mask(2 * nrow, ncol, 0.5 * ratio * ncol, drop)
    # smoothing along the detector only: smoothing across angles biases the join at 180 degrees
    coarse_s = gaussian_filter(s, (0, 2))
    fine_s = gaussian_filter(s, (0, 1))

    def best(sino, cors):
        flipped = np.fliplr(sino)
        m = np.array([_vo_metric(sino, flipped, 2.0 * (c - cen_flip), mask) for c in cors])
        return _parabolic_peak(cors, -m, int(np.argmin(m)))

    if ncol > 300:  # coarse pass on a 2x binned detector: binned bin k is centred at 2k + 0.5
        nb = ncol // 2
        binned = coarse_s[:, : 2 * nb].reshape(nrow, nb, 2).mean(axis=2)
        cen_b = (nb - 1.0) / 2.0
        mask_b = _vo_mask(2 * nrow, nb, 0.5 * ratio * nb, drop)
        flipped = np.fliplr(binned)
        cors = np.arange(np.floor((lo - 0.5) / 2), np.ceil((hi - 0.5) / 2) + 1e-9, 1.0) + 0.5 * (
            nb % 2 == 0)  # integer shifts only: fast and exact
        m = [_vo_metric(binned, flipped, 2.0 * (c - cen_b), mask_b) for c in cors]
        c0 = 2.0 * cors[int(np.argmin(m))] + 0.5
    else:
        coarse = np.arange(np.floor(lo), np.ceil(hi) + 1e-9, 1.0)
        c0 = float(np.round(best(coarse_s, coarse)))
    fine = np.arange(c0 - 2.0, c0 + 2.0 + 1e-9, fine_step)
    return float(best(fine_s, fine))


def find_center_pc(sinogram, angles, tolerance: float | None = None) -> float:
    """Centre from projections 180 degrees apart, registered by phase correlation.

    Every projection at ``theta`` that has a partner at ``theta + 180`` (within ``tolerance``
    degrees, default half the angular step) is mirrored and the stack of pairs is registered as
    one image with sub-pixel precision.
    """
    from skimage.registration import phase_cross_correlation

    s, a = _check(sinogram, angles)
    step = float(np.median(np.abs(np.diff(np.sort(a))))) if a.size > 1 else 1.0
    tol = 0.5 * step + 1e-6 if tolerance is None else float(tolerance)
    first, second = [], []
    for i, t in enumerate(a):
        d = np.abs(((a - t - 180.0) + 180.0) % 360.0 - 180.0)
        j = int(np.argmin(d))
        if d[j] <= tol and a[j] > t:
            first.append(i)
            second.append(j)
    if len(first) < 1:
        raise ValueError(
            "find_center_pc needs projections 180 degrees apart; none found in these angles "
            "(use find_center_vo or find_center_sharpness)"
        )
    p = s[first]
    q = np.fliplr(s[second])
    shift, _, _ = phase_cross_correlation(p, q, upsample_factor=20, normalization=None)
    # q(k) = p(k + sh) with sh = 2c - (n - 1): the mirror of p about the centre c
    n = s.shape[1]
    return (float(shift[1]) + n - 1) / 2.0


def find_center_com(sinogram, angles, edge_fraction: float = 0.02) -> float:
    """Centre from the sinusoid traced by each projection's centre of mass (any angular range).

    In parallel beam the centre of mass of the projection at angle ``theta`` lies at
    ``center + x_c cos(theta) - y_c sin(theta)``, with ``(y_c, x_c)`` the object's centre of mass, so a
    linear least-squares fit over the angles gives the centre directly. Exact for objects that
    stay inside the field of view, and unaffected by a missing wedge, which is where the
    sharpness search struggles. Projections whose edge pixels hold more than ``edge_fraction`` of
    their mass (the object leaves the field of view) are left out of the fit.

    Raises
    ------
    ValueError
        Fewer than three usable projections, or angles that span no range.
    """
    s, a = _check(sinogram, angles)
    s = np.clip(np.asarray(s, dtype=np.float64), 0, None)
    mass = s.sum(axis=1)
    edge = s[:, :2].sum(axis=1) + s[:, -2:].sum(axis=1)
    use = (mass > 0) & (edge <= edge_fraction * np.maximum(mass, 1e-30))
    if use.sum() < 3:
        use = mass > 0
    if use.sum() < 3 or np.ptp(a[use]) < 1.0:
        raise ValueError("find_center_com needs at least three projections spanning some angle")
    k = np.arange(s.shape[1], dtype=np.float64)
    centroid = (s[use] * k).sum(axis=1) / mass[use]
    th = np.deg2rad(a[use])
    design = np.stack([np.ones_like(th), np.cos(th), -np.sin(th)], axis=1)
    coef, *_ = np.linalg.lstsq(design, centroid, rcond=None)
    return float(coef[0])
