"""Parallel-beam geometry: angle ranges, the reconstruction circle and :class:`Geometry`.

The validation of user input (``validate_*``, ``looks_like_radians``, ``MAX_SEED``) lives in
:mod:`napari_ganrec.validation` and is re-exported here, so ``from napari_ganrec.geometry import
validate_angles`` keeps working.

Convention (see DESIGN.md): pixel ``(i, j)`` of an ``n x n`` image has its centre at
``(y, x) = (i - n/2, j - n/2)`` pixels from the rotation axis; a point ``(y, x)`` projects at
angle ``theta`` onto detector coordinate ``u = x cos(theta) - y sin(theta) + center``, where detector
bin ``k`` covers ``[k - 1/2, k + 1/2]``. With ``center = n_det / 2`` this is exactly
``skimage.transform.radon(image, theta, circle=True)`` for even ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import (
    MAX_SEED,
    looks_like_radians,
    validate_angles,
    validate_center,
    validate_out,
    validate_rows,
    validate_seed,
    validate_sinogram,
    validate_weight,
)

__all__ = [
    "Geometry",
    "validate_angles",
    "validate_sinogram",
    "validate_center",
    "validate_rows",
    "validate_seed",
    "validate_weight",
    "validate_out",
    "looks_like_radians",
    "MAX_SEED",
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
    center: float | None = None

    def __post_init__(self):
        n_det = int(self.n_det)
        if n_det < 2:
            raise ValueError(f"n_det must be at least 2, got {self.n_det}")
        a = validate_angles(self.angles, warn_radians=False)
        object.__setattr__(self, "angles", tuple(float(x) for x in a))
        object.__setattr__(self, "n_det", n_det)
        c = validate_center(self.center, n_det)
        object.__setattr__(self, "center", n_det / 2.0 if c is None else c)

    @classmethod
    def create(cls, angles, n_det: int, center: float | None = None) -> Geometry:
        """Build a geometry from an angle array and a centre (``None``: ``n_det / 2``), validating
        both. Angles that look like radians are not warned about here: the public functions that
        take angles from the user do that, once."""
        a = validate_angles(angles, warn_radians=False)
        return cls(tuple(float(x) for x in a), int(n_det), center)

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
