"""Projection angles: the angle-file parser, the checks against the projection count, side-car
angle files and the order in which a reader looks for angles."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .errors import TomoFormatError

__all__ = [
    "ANGLE_SIDECAR_SUFFIXES",
    "FOLDER_ANGLE_FILES",
    "read_angle_file",
    "check_angles",
    "find_angle_sidecar",
    "resolve_angles",
]


def read_angle_file(path) -> np.ndarray:
    """Read angles (degrees) from a text side-car: ``.rawtlt``/``.tlt`` (one per line) or any
    whitespace/comma separated list; ``#`` starts a comment.

    The one angle-file parser of the package (``widget_model.inputs.read_angles_file`` calls it).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    TomoFormatError
        When the file cannot be read, holds no angles, or holds something other than numbers
        (``problem`` names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"angle file {path} does not exist")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise TomoFormatError(path, f"cannot be read: {exc.strerror or exc}") from None
    values: list[float] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        for tok in line.split():
            try:
                values.append(float(tok))
            except ValueError:
                raise TomoFormatError(
                    path, f"line {lineno}: {tok!r} is not a number (an angle in degrees)"
                ) from None
    if not values:
        raise TomoFormatError(path, "holds no angles (it is empty, or only comments)")
    return np.asarray(values, dtype=np.float64)


def check_angles(angles, n_projections: int, path, units: str | None = None) -> np.ndarray:
    """Validate angles against the projection count; convert radians when ``units`` says so.

    Warns when angles without declared units look like radians.
    """
    try:
        a = np.asarray(angles, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise TomoFormatError(path, f"the angles are not numbers (degrees): {exc}") from None
    if a.size != n_projections:
        hint = (f" (if the file should hold {a.size} projections, it is truncated)"
                if a.size > n_projections else "")
        raise TomoFormatError(
            path,
            f"{a.size} angles for {n_projections} projections; give one angle per projection{hint}",
        )
    if not np.all(np.isfinite(a)):
        raise TomoFormatError(path, "the angles contain NaN or infinite values")
    if a.size > 1 and np.ptp(a) == 0:
        raise TomoFormatError(path, f"all {a.size} angles are equal ({a[0]:g}); give the angle of each "
                              "projection (degrees)")
    u = (units or "").strip().lower()
    if u in ("rad", "radian", "radians"):
        return np.rad2deg(a)
    if u in ("mrad", "milliradian", "milliradians"):
        return np.rad2deg(a * 1e-3)
    if not u and a.size > 2 and np.ptp(a) > 0 and np.max(np.abs(a)) <= 2 * np.pi + 1e-6:
        warnings.warn(
            f"{path}: the angles span {np.ptp(a):.3g} and never exceed 2*pi; they look like "
            "radians but degrees were expected (convert with numpy.rad2deg or pass angles=)",
            UserWarning,
            stacklevel=3,
        )
    return a

ANGLE_SIDECAR_SUFFIXES = (".rawtlt", ".tlt", ".angles", ".angles.txt", "_angles.txt")
FOLDER_ANGLE_FILES = ("angles.txt", "angles.tlt", "angles.rawtlt", "theta.txt", "tilt.rawtlt")


def find_angle_sidecar(path) -> Path | None:
    """The side-car angle file of ``path``, if any.

    For a file ``scan.ext``: ``scan.rawtlt``, ``scan.tlt``, ``scan.angles``, ``scan.angles.txt``,
    ``scan_angles.txt`` (first found). For a folder: ``angles.txt``, ``angles.tlt``,
    ``angles.rawtlt``, ``theta.txt``, ``tilt.rawtlt`` inside it, or a single ``*.rawtlt``/``*.tlt``.
    """
    path = Path(path)
    if path.is_dir():
        for name in FOLDER_ANGLE_FILES:
            if (path / name).is_file():
                return path / name
        found = sorted(list(path.glob("*.rawtlt")) + list(path.glob("*.tlt")))
        return found[0] if len(found) == 1 else None
    stem = path.with_suffix("")
    for suffix in ANGLE_SIDECAR_SUFFIXES:
        cand = Path(str(stem) + suffix)
        if cand.is_file():
            return cand
    return None


def resolve_angles(angles, path, n_projections: int, found=None, found_units=None):
    """Angles from (in this order) the ``angles`` argument (array, path of a text file, or a
    callable ``f(n_projections) -> angles`` such as a parsed ``START:STOP`` range), the file's own
    angles ``found``, or a side-car file; a :class:`TomoFormatError` when none."""
    if callable(angles):
        angles = angles(n_projections)
    if angles is not None:
        if isinstance(angles, (str, os.PathLike)):
            return check_angles(read_angle_file(angles), n_projections, angles)
        return check_angles(angles, n_projections, path)
    if found is not None:
        return check_angles(found, n_projections, path, units=found_units)
    side = find_angle_sidecar(path)
    if side is not None:
        return check_angles(read_angle_file(side), n_projections, side)
    raise TomoFormatError(
        path,
        "no projection angles: the file has none and there is no side-car angle file "
        f"({', '.join('*' + s for s in ANGLE_SIDECAR_SUFFIXES)}); pass angles (degrees)",
    )
