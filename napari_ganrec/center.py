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

The three algorithms that need no reconstruction (:func:`find_center_vo`, :func:`find_center_pc`,
:func:`find_center_com`) live in :mod:`napari_ganrec.center_methods` and are re-exported here; this
module keeps the FBP scan, its metrics, the sharpness search and the choice among the methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .center_methods import _check, _parabolic_peak, find_center_com, find_center_pc, find_center_vo
from .geometry import Geometry, circle_mask, validate_angles
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
