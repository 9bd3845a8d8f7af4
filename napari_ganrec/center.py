"""Centre of rotation: manual scans, automatic estimates for 180/360 degree and limited-angle scans.

Convention (as :mod:`napari_ganrec.geometry`): the centre is a detector coordinate in pixels where
bin ``k`` is centred at ``k``; the default centre is ``n_det / 2``. All functions take one
sinogram ``(n_angles, n_det)`` of line integrals (after ``-log``) and angles in degrees.

- :func:`center_scan`: FBP reconstructions for a list of candidate centres (the stack the widget
  shows); the same ramp filter and angular weights as :func:`napari_ganrec.methods.fbp.fbp`, with a
  fast pixel-driven back projection (linear interpolation), so scanning dozens of centres on a
  640-pixel detector takes seconds.
- :func:`sharpness`: the image metric the scans maximise (mass over total variation inside the
  reconstruction circle): a wrong centre turns every edge into a double arc and adds streaks.
- :func:`find_center_vo`: Vo's method (Opt. Express 22, 19078, 2014) for scans covering 180
  degrees: the sinogram and its mirror image, joined into a 360 degree sinogram, have the least
  Fourier energy outside the double wedge when the centre is right.
- :func:`find_center_pc`: phase correlation of projections 180 degrees apart (360 degree scans,
  or 180 degree scans that include both ends).
- :func:`find_center_sharpness`: coarse-to-fine maximisation of :func:`sharpness` over FBP
  reconstructions; works for limited-angle scans.
- :func:`estimate_center`: picks one of the above from the angular range (``method="auto"``) and
  says which one it used (:class:`CenterEstimate`); :func:`find_center` returns just the number.
  The command line and the reconstruction widget both call :func:`estimate_center`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .geometry import Geometry, circle_mask, validate_angles, validate_sinogram
from .methods.fbp import fourier_filter

__all__ = [
    "center_scan",
    "sharpness",
    "scan_metric",
    "tv_score",
    "find_center",
    "estimate_center",
    "auto_center_method",
    "CenterEstimate",
    "CENTER_METHOD_LABELS",
    "find_center_vo",
    "find_center_pc",
    "find_center_sharpness",
    "find_center_com",
    "fine_scan",
]


def _check(sinogram, angles) -> tuple[np.ndarray, np.ndarray]:
    s = validate_sinogram(sinogram)
    if s.ndim != 2:
        raise ValueError(f"sinogram must be one slice (n_angles, n_det), got shape {s.shape}")
    a = validate_angles(angles, s.shape[0])
    return s, a


def _filtered(sino: np.ndarray, angles: np.ndarray, filter_name: str) -> torch.Tensor:
    """Ramp-filtered sinogram, weighted per angle exactly as methods.fbp.fbp does."""
    n = sino.shape[1]
    size = max(64, int(2 ** np.ceil(np.log2(2 * n))))
    filt = torch.as_tensor(fourier_filter(size, filter_name), dtype=torch.float32)
    t = torch.as_tensor(sino, dtype=torch.float32)
    padded = torch.nn.functional.pad(t, (0, size - n))
    out = torch.fft.ifft(torch.fft.fft(padded, dim=-1) * filt, dim=-1).real[..., :n]
    w = 0.5 * Geometry.create(angles, n).angular_weights()
    return out * torch.as_tensor(w, dtype=torch.float32).view(-1, 1)


def _backproject(filtered: np.ndarray, angles: np.ndarray, center: float, size: int,
                 step: float = 1.0) -> np.ndarray:
    """Pixel-driven back projection onto a ``size x size`` grid of spacing ``step`` pixels,
    centred on the rotation axis; linear interpolation on the detector, zero outside it."""
    n_det = filtered.shape[1]
    coords = (np.arange(size, dtype=np.float64) - size / 2.0) * step
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    xx = xx.ravel()
    yy = yy.ravel()
    det = np.arange(n_det, dtype=np.float64)
    out = np.zeros(size * size, dtype=np.float64)
    for row, theta in zip(filtered, np.deg2rad(angles)):
        u = xx * np.cos(theta) - yy * np.sin(theta) + center
        out += np.interp(u, det, row, left=0.0, right=0.0)
    return out.reshape(size, size).astype(np.float32)


def center_scan(
    sinogram,
    angles,
    centers,
    *,
    filter_name: str = "ramp",
    size: int | None = None,
    step: float = 1.0,
) -> np.ndarray:
    """FBP reconstructions of one sinogram for each candidate centre.

    Parameters
    ----------
    sinogram : array-like
        ``(n_angles, n_det)`` line integrals.
    angles : array-like
        Degrees, one per row.
    centers : array-like
        Candidate centres (detector pixels).
    filter_name : str
        FBP filter (see :data:`napari_ganrec.methods.FILTERS`).
    size : int, optional
        Output width in pixels (default ``n_det``); with ``step`` > 1 a coarser, faster preview
        covering ``size * step`` detector pixels.
    step : float
        Pixel spacing of the output grid in detector pixels.

    Returns
    -------
    numpy.ndarray
        ``(n_centers, size, size)`` float32; slice ``k`` matches ``methods.fbp.fbp`` with
        ``center=centers[k]`` (up to interpolation).
    """
    s, a = _check(sinogram, angles)
    cs = np.atleast_1d(np.asarray(centers, dtype=np.float64))
    if cs.ndim != 1 or cs.size == 0 or not np.all(np.isfinite(cs)):
        raise ValueError(f"centers must be a non-empty 1-D list of numbers, got {centers!r}")
    n = s.shape[1]
    size = n if size is None else int(size)
    if size < 2 or step <= 0:
        raise ValueError(f"size must be >= 2 and step > 0, got size={size}, step={step}")
    with torch.no_grad():
        filt = _filtered(s, a, filter_name).numpy().astype(np.float64)
    return np.stack([_backproject(filt, a, float(c), size, step) for c in cs])


def sharpness(image, mask: np.ndarray | None = None) -> float:
    """Sharpness of a reconstruction: mean squared gradient over the squared mean absolute value,
    inside ``mask`` (default: the circle of 95% of the half width). Higher is sharper;
    scale-invariant. A wrong centre smears every edge into a double arc, which lowers it.
    The metric of the fine scans of full (180/360 degree) data.
    """
    img = np.asarray(image, dtype=np.float64)
    if mask is None:
        mask = circle_mask(img.shape[-1], radius=0.95 * img.shape[-1] / 2)
    gy, gx = np.gradient(img)
    scale = np.mean(np.abs(img[mask])) ** 2 + 1e-30
    return float(np.mean((gy**2 + gx**2)[mask]) / scale)


def tv_score(image, mask: np.ndarray | None = None, sigma: float = 1.0) -> float:
    """Mass over total variation of the Gaussian-smoothed (``sigma`` pixels) image, mass inside
    ``mask``, TV over the whole image. Higher is better.

    With a missing wedge, a wrong centre adds streaks and doubled edges that raise the total
    variation; the smoothing keeps noise from dominating it. The metric of limited-angle scans.
    """
    from scipy.ndimage import gaussian_filter

    img = np.asarray(image, dtype=np.float64)
    if sigma > 0:
        img = gaussian_filter(img, sigma)
    if mask is None:
        mask = circle_mask(img.shape[-1], radius=0.95 * img.shape[-1] / 2)
    tv = np.abs(np.diff(img, axis=0)).sum() + np.abs(np.diff(img, axis=1)).sum()
    return float(np.abs(img[mask]).sum() / (tv + 1e-30))


METRICS = {"sharpness": sharpness, "tv": tv_score}


def scan_metric(stack, metric: str = "sharpness") -> np.ndarray:
    """The ``metric`` (``"sharpness"`` or ``"tv"``) of each image of a centre-scan stack."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    stack = np.asarray(stack)
    mask = circle_mask(stack.shape[-1], radius=0.95 * stack.shape[-1] / 2)
    return np.array([METRICS[metric](im, mask) for im in stack])


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


def fine_scan(sinogram, angles, centers, metric: str = "sharpness",
              **kwargs) -> tuple[float, np.ndarray]:
    """The centre among ``centers`` whose FBP reconstruction scores best on ``metric``, and all
    the scores (``kwargs`` go to :func:`center_scan`)."""
    stack = center_scan(sinogram, angles, centers, **kwargs)
    m = scan_metric(stack, metric)
    return float(np.asarray(centers)[int(np.argmax(m))]), m


def find_center_sharpness(
    sinogram,
    angles,
    search: tuple[float, float] | None = None,
    *,
    coarse_step: float = 2.0,
    fine_step: float = 0.25,
    preview_size: int | None = None,
    metric: str = "tv",
) -> float:
    """Centre maximising the :func:`sharpness` of FBP reconstructions, coarse then fine.

    Works for any angular range, limited-angle tilt series included.

    Parameters
    ----------
    search : (float, float), optional
        Range of centres to try (default: the middle half of the detector).
    coarse_step, fine_step : float
        Steps of the two passes (pixels); the fine pass covers +-2 coarse steps.
    preview_size : int, optional
        Reconstruct only the central ``preview_size`` pixels (faster on wide detectors);
        default ``min(n_det, 256)``.
    metric : {"tv", "sharpness"}
        :func:`tv_score` (default, robust with a missing wedge) or :func:`sharpness`.
    """
    s, a = _check(sinogram, angles)
    n = s.shape[1]
    lo, hi = search if search is not None else (0.25 * n, 0.75 * n)
    if not lo < hi:
        raise ValueError(f"search must be (low, high) with low < high, got {search!r}")
    size = min(n, 256) if preview_size is None else int(preview_size)
    coarse = np.arange(lo, hi + 1e-9, coarse_step)
    best, m = fine_scan(s, a, coarse, metric, size=size)
    fine = np.arange(best - 2 * coarse_step, best + 2 * coarse_step + 1e-9, fine_step)
    fine = fine[(fine >= 0) & (fine <= n)]
    stack = center_scan(s, a, fine, size=size)
    m = scan_metric(stack, metric)
    return _parabolic_peak(fine, m, int(np.argmax(m)))


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


#: What each method is called where a user reads it (the widget's centre box, messages).
CENTER_METHOD_LABELS = {
    "vo": "Vo's method (180 degrees)",
    "pc": "phase correlation (360 degrees)",
    "com": "sinusoid fit of the centre of mass (limited angles)",
    "sharpness": "FBP sharpness search",
}


@dataclass(frozen=True)
class CenterEstimate:
    """An automatic centre of rotation and the method that found it.

    Attributes
    ----------
    center : float
        Detector coordinate of the rotation axis (pixels, bin ``k`` centred at ``k``).
    method : str
        ``"vo"``, ``"pc"``, ``"com"`` or ``"sharpness"`` (the method that ran, never ``"auto"``).
    span : float
        Angular range of the scan in degrees (last minus first angle plus one step).
    """

    center: float
    method: str
    span: float

    @property
    def label(self) -> str:
        """The method as a user reads it, e.g. ``"Vo's method (180 degrees)"``."""
        return CENTER_METHOD_LABELS[self.method]


def _span(a: np.ndarray) -> float:
    step = float(np.median(np.abs(np.diff(np.sort(a))))) if a.size > 1 else 0.0
    return float(np.ptp(a)) + step


def auto_center_method(angles) -> str:
    """The method ``method="auto"`` uses for ``angles`` (degrees): ``"pc"`` when the scan covers
    360 degrees, ``"vo"`` for 180 degrees (175 to 190), ``"com"`` otherwise."""
    span = _span(validate_angles(angles))
    if span >= 355:
        return "pc"
    if 175 <= span <= 190:
        return "vo"
    return "com"


def estimate_center(sinogram, angles, method: str = "auto", **kwargs) -> CenterEstimate:
    """Estimate the centre of rotation of one sinogram and say which method found it.

    Parameters
    ----------
    sinogram : array-like
        ``(n_angles, n_det)`` line integrals (after ``-log``).
    angles : array-like
        Degrees, one per row.
    method : {"auto", "vo", "pc", "com", "sharpness"}
        ``"auto"``: phase correlation when the scan covers 360 degrees, Vo's method for 180
        degrees, the centre-of-mass sinusoid fit otherwise (limited angle, tilt series); see
        :func:`auto_center_method`.
    kwargs
        Passed to the chosen method.

    Returns
    -------
    CenterEstimate

    Raises
    ------
    ValueError
        An unknown ``method``, or a sinogram / angles the chosen method cannot use.
    """
    s, a = _check(sinogram, angles)
    funcs = {"vo": find_center_vo, "pc": find_center_pc, "com": find_center_com,
             "sharpness": find_center_sharpness}
    if method == "auto":
        method = auto_center_method(a)
    if method not in funcs:
        raise ValueError(f"method must be 'auto', 'vo', 'pc', 'com' or 'sharpness', got {method!r}")
    c = float(funcs[method](s, a, **kwargs))
    if not np.isfinite(c):
        raise ValueError(f"the automatic centre ({CENTER_METHOD_LABELS[method]}) is not a number; "
                         "check that the sinogram holds line integrals, or type a centre")
    return CenterEstimate(c, method, _span(a))


def find_center(sinogram, angles, method: str = "auto", **kwargs) -> float:
    """Estimate the centre of rotation of one sinogram (the number of :func:`estimate_center`).

    Parameters
    ----------
    method : {"auto", "vo", "pc", "com", "sharpness"}
        See :func:`estimate_center`.
    kwargs
        Passed to the chosen method.
    """
    return estimate_center(sinogram, angles, method, **kwargs).center
