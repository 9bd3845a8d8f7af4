"""Parallel-beam geometry and validation of user input.

Convention (see DESIGN.md): pixel ``(i, j)`` of an ``n x n`` image has its centre at
``(y, x) = (i - n/2, j - n/2)`` pixels from the rotation axis; a point ``(y, x)`` projects at
angle ``theta`` onto detector coordinate ``u = x cos(theta) - y sin(theta) + center``, where detector
bin ``k`` covers ``[k - 1/2, k + 1/2]``. With ``center = n_det / 2`` this is exactly
``skimage.transform.radon(image, theta, circle=True)`` for even ``n``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Geometry",
    "validate_angles",
    "validate_sinogram",
    "angles_from_range",
    "circle_mask",
]


def _is_round_step(step: float) -> bool:
    return abs(step * 20 - round(step * 20)) < 1e-6 and step != 0


def angles_from_range(start: float, stop: float, count: int, endpoint: bool | None = None) -> np.ndarray:
    """Evenly spaced projection angles in degrees.

    Parameters
    ----------
    start, stop : float
        First angle and end of the range, in degrees.
    count : int
        Number of projections.
    endpoint : bool, optional
        Whether ``stop`` is itself an angle. By default the choice whose step is a round number of
        degrees (a multiple of 0.05) wins: ``0:180:181`` and ``-70:70:141`` include the end (step 1),
        ``0:180:180`` and ``0:120:120`` do not (step 1). When both or neither are round, a full
        180/360 degree range excludes its end (it would repeat the first projection) and any other
        range includes it.

    Returns
    -------
    numpy.ndarray
        ``count`` angles in degrees, float64.
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"angle count must be at least 1, got {count}")
    if not (np.isfinite(start) and np.isfinite(stop)):
        raise ValueError(f"angle range must be finite, got {start}:{stop}")
    if endpoint is None:
        span = abs(float(stop) - float(start))
        full = np.isclose(span, 180.0) or np.isclose(span, 360.0)
        incl = count > 1 and _is_round_step(span / (count - 1))
        excl = _is_round_step(span / count)
        endpoint = incl if incl != excl else not full
    return np.linspace(float(start), float(stop), count, endpoint=endpoint)


def validate_angles(
    angles, n_angles: int | None = None, name: str = "angles", warn_radians: bool = True
) -> np.ndarray:
    """Check projection angles (degrees) and return them as float64.

    Raises
    ------
    ValueError
        When angles are not a 1-D finite array, are empty, or their count differs from
        ``n_angles``.

    Warns
    -----
    UserWarning
        When the angles look like radians (all within +-2*pi while more than two are given).
    """
    try:
        a = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D array of numbers in degrees: {exc}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one angle per projection), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: at least one projection angle is needed")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if n_angles is not None and a.size != n_angles:
        raise ValueError(
            f"{name} has {a.size} values but the sinogram has {n_angles} projections (rows); "
            "give one angle per projection"
        )
    if warn_radians and a.size > 2 and np.ptp(a) > 0 and np.max(np.abs(a)) <= 2 * np.pi + 1e-6:
        warnings.warn(
            f"{name} span {np.ptp(a):.3g} and never exceed 2*pi: they look like radians, but "
            "napari-ganrec expects degrees (use numpy.rad2deg)",
            UserWarning,
            stacklevel=3,
        )
    return a


def validate_sinogram(sinogram, name: str = "sinogram") -> np.ndarray:
    """Check a sinogram ``(n_angles, n_det)`` or stack ``(n_slices, n_angles, n_det)``.

    Returns a C-contiguous float32 array with the same shape.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty axes, a detector narrower than 2 pixels, or NaN/inf.
    """
    try:
        s = np.asarray(sinogram)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read is a bad argument
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None
    if s.dtype == object or not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    if np.iscomplexobj(s):
        raise ValueError(f"{name} must be real, got complex values")
    if s.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be 2-D (n_angles, n_det) or 3-D (n_slices, n_angles, n_det), "
            f"got shape {s.shape}"
        )
    if s.size == 0 or 0 in s.shape:
        raise ValueError(f"{name} is empty (shape {s.shape})")
    if s.shape[-1] < 2:
        raise ValueError(f"{name} has a detector of {s.shape[-1]} pixel(s); at least 2 are needed")
    s = np.ascontiguousarray(s, dtype=np.float32)
    if not np.all(np.isfinite(s)):
        bad = int(np.size(s) - np.count_nonzero(np.isfinite(s)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); clean the data first "
            "(e.g. flat/dark correction with a floor before -log)"
        )
    return s


def circle_mask(n: int, radius: float | None = None) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside the reconstruction circle."""
    radius = n / 2.0 if radius is None else float(radius)
    c = np.arange(n) - n / 2.0  # pixel centres relative to the axis: i - n/2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return (yy**2 + xx**2) <= radius**2


@dataclass(frozen=True)
class Geometry:
    """A parallel-beam geometry: angles (degrees), detector width and centre of rotation.

    The reconstructed image is ``n_det x n_det`` pixels of the detector's pixel size.
    """

    angles: tuple[float, ...]
    n_det: int
    center: float = field(default=float("nan"))

    def __post_init__(self):
        n_det = int(self.n_det)
        if n_det < 2:
            raise ValueError(f"n_det must be at least 2, got {self.n_det}")
        a = validate_angles(self.angles, warn_radians=False)
        object.__setattr__(self, "angles", tuple(float(x) for x in a))
        object.__setattr__(self, "n_det", n_det)
        c = self.center
        if c is None or (isinstance(c, float) and np.isnan(c)):
            c = n_det / 2.0
        try:
            c = float(c)
        except (TypeError, ValueError):
            raise ValueError(f"center must be a number of pixels, got {self.center!r}") from None
        if not np.isfinite(c) or not (0.0 <= c <= n_det):
            raise ValueError(
                f"center must lie on the detector (0 to {n_det} pixels), got {self.center!r}"
            )
        object.__setattr__(self, "center", c)

    @classmethod
    def create(cls, angles, n_det: int, center: float | None = None) -> Geometry:
        """Build a geometry from an angle array, validating it."""
        a = validate_angles(angles)
        return cls(tuple(float(x) for x in a), int(n_det), float("nan") if center is None else center)

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    @property
    def angles_deg(self) -> np.ndarray:
        return np.asarray(self.angles, dtype=np.float64)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.n_det, self.n_det)

    @property
    def sino_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.n_det)

    def angular_weights(self) -> np.ndarray:
        """Angular interval (radians) each projection stands for, for FBP.

        For angles sorted modulo 180 degrees, each gets half the gap to its neighbours; the
        total is the covered range (pi for a full scan), so limited and non-uniform scans
        are weighted correctly.
        """
        a = np.deg2rad(self.angles_deg)
        n = a.size
        if n == 1:
            return np.array([np.pi])
        order = np.argsort(a)
        s = a[order]
        gaps = np.diff(s)
        span = s[-1] - s[0]
        w = np.empty(n)
        w[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
        mean_gap = span / (n - 1) if span > 0 else np.pi / n
        w[0] = 0.5 * gaps[0] + 0.5 * mean_gap
        w[-1] = 0.5 * gaps[-1] + 0.5 * mean_gap
        # a full (or larger) scan covers pi: no more weight than that in total
        total = w.sum()
        if total > np.pi * (1 + 1e-9) and span >= np.pi * (1 - 1.5 / n):
            w *= np.pi / total
        out = np.empty(n)
        out[order] = w
        return out
