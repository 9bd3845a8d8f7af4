"""Inputs of an interactive run, without Qt or napari: sinograms from an image, angles, coverage.

The reconstruction widget captures everything a run needs on the main thread with these helpers
(so the worker never reads widget state), and tests can check them without a GUI.

Layouts of a 3-D image (axis 0 is always the projection angle, except for sinogram stacks):

``"vertical"``
    Projection stack ``(angles, rows, detector)`` whose rotation axis runs along the rows (the usual
    tomography set-up): slice ``s`` is ``data[:, s, :]``.
``"horizontal"``
    Projection stack ``(angles, rows, columns)`` whose rotation axis runs along x (a tilt series
    tilted about the horizontal axis): slice ``s`` is ``data[:, :, s]``, the detector runs along
    the rows.
``"sinograms"``
    A stack of sinograms ``(slices, angles, detector)``: slice ``s`` is ``data[s]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import validate_angles

__all__ = [
    "LAYOUTS",
    "LAYOUT_LABELS",
    "InputShape",
    "input_shape",
    "extract_sinograms",
    "slice_marker_lines",
    "angles_from_metadata",
    "center_from_metadata",
    "read_angles_file",
    "Coverage",
    "angular_coverage",
    "fbp_preview",
    "center_scan",
    "scan_centers",
]

LAYOUTS = ("vertical", "horizontal", "sinograms")
LAYOUT_LABELS = {
    "vertical": "projections, rotation axis along rows (angles, rows, detector)",
    "horizontal": "projections, rotation axis along x (angles, rows, columns)",
    "sinograms": "sinogram stack (slices, angles, detector)",
}


@dataclass(frozen=True)
class InputShape:
    """What an image holds once its layout is known."""

    n_angles: int
    n_slices: int
    n_det: int
    layout: str  # "sinogram" for a 2-D image, else one of LAYOUTS


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def input_shape(shape: tuple[int, ...], layout: str = "vertical") -> InputShape:
    """Angles, slices and detector width of an image of ``shape`` in ``layout``.

    A 2-D image is one sinogram ``(angles, detector)`` whatever the layout.

    Raises
    ------
    ValueError
        For an image that is not 2-D or 3-D, or an unknown layout.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return InputShape(shape[0], 1, shape[1], "sinogram")
    if len(shape) != 3:
        raise ValueError(
            "input image must be 2-D (angles, detector) or 3-D (a projection or sinogram stack), "
            f"got shape {shape}"
        )
    layout = _check_layout(layout)
    if layout == "vertical":
        return InputShape(shape[0], shape[1], shape[2], layout)
    if layout == "horizontal":
        return InputShape(shape[0], shape[2], shape[1], layout)
    return InputShape(shape[1], shape[0], shape[2], layout)


def _slice_range(start: int, stop: int | None, n_slices: int) -> tuple[int, int]:
    start = int(start)
    stop = start + 1 if stop is None else int(stop)
    if not (0 <= start < n_slices):
        raise ValueError(f"slice {start} is outside the image (0 to {n_slices - 1})")
    if not (start < stop <= n_slices):
        raise ValueError(
            f"slice range {start}:{stop} must hold at least one slice and end by {n_slices}"
        )
    return start, stop


def extract_sinograms(data, layout: str = "vertical", start: int = 0, stop: int | None = None):
    """Sinograms ``(n, angles, detector)`` of slices ``start:stop`` of an image, as float32.

    Only the requested slices are read (``data`` may be a lazy array, e.g. dask), and the result
    is a fresh C-contiguous array the caller owns, so a worker thread may use it safely.

    Parameters
    ----------
    data : array-like
        2-D sinogram or 3-D stack (see the module docstring for the layouts).
    layout : str
        One of :data:`LAYOUTS`; ignored for 2-D data.
    start, stop : int
        Slice range (``stop`` excluded; default one slice).
    """
    shape = tuple(np.shape(data))
    info = input_shape(shape, layout)
    start, stop = _slice_range(start, stop, info.n_slices)
    if info.layout == "sinogram":
        out = np.asarray(data)[None]
    elif info.layout == "vertical":
        out = np.moveaxis(np.asarray(data[:, start:stop, :]), 1, 0)
    elif info.layout == "horizontal":
        out = np.moveaxis(np.asarray(data[:, :, start:stop]), 2, 0)
    else:
        out = np.asarray(data[start:stop])
    return np.array(out, dtype=np.float32, order="C", copy=True)


def slice_marker_lines(shape, layout: str, start: int, stop: int | None = None):
    """Lines marking the slices ``start:stop`` on the projections, in the image's last two axes.

    Returns a list of ``(2, 2)`` arrays (row, column end points) for a napari Shapes layer of
    ``shape_type="line"``: one line for one slice, two for a range (its first and last slice).
    Returns an empty list where the slice is not a line on the displayed plane (2-D sinograms and
    sinogram stacks).
    """
    info = input_shape(shape, layout)
    if info.layout in ("sinogram", "sinograms"):
        return []
    start, stop = _slice_range(start, stop, info.n_slices)
    rows, cols = int(shape[1]), int(shape[2])
    picks = [start] if stop - start == 1 else [start, stop - 1]
    lines = []
    for s in picks:
        if info.layout == "vertical":
            lines.append(np.array([[s, -0.5], [s, cols - 0.5]], dtype=float))
        else:
            lines.append(np.array([[-0.5, s], [rows - 0.5, s]], dtype=float))
    return lines


_ANGLE_KEYS = ("angles", "angles_deg", "theta_deg", "theta")


def angles_from_metadata(metadata: Mapping | None, n_angles: int | None = None):
    """Projection angles (degrees) a reader left in ``layer.metadata``, or ``None``.

    Looks for the keys ``angles``, ``angles_deg``, ``theta_deg``, ``theta`` (in that order) and
    ignores values whose count differs from ``n_angles`` when given.
    """
    if not metadata:
        return None
    for key in _ANGLE_KEYS:
        if key in metadata and metadata[key] is not None:
            try:
                a = np.asarray(metadata[key], dtype=np.float64).ravel()
            except (TypeError, ValueError):
                continue
            if a.size == 0 or not np.all(np.isfinite(a)):
                continue
            if n_angles is not None and a.size != n_angles:
                continue
            return a
    return None


def center_from_metadata(metadata: Mapping | None):
    """The centre of rotation (pixels) a reader left in ``layer.metadata``, or ``None``."""
    if not metadata:
        return None
    for key in ("center", "centre", "rotation_center"):
        v = metadata.get(key)
        if v is None:
            continue
        try:
            c = float(np.asarray(v, dtype=np.float64).ravel()[0])
        except (TypeError, ValueError, IndexError):
            continue
        if np.isfinite(c):
            return c
    return None


def read_angles_file(path, n_angles: int | None = None) -> np.ndarray:
    """Angles (degrees) from a text file: numbers separated by whitespace, commas or newlines.

    Lines starting with ``#`` are comments.

    Raises
    ------
    ValueError
        When the file cannot be read, holds something that is not a number, or (with
        ``n_angles``) holds a different count; the message names the file.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"angles file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    values = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].replace(",", " ").strip()
        for tok in line.split():
            try:
                values.append(float(tok))
            except ValueError:
                raise ValueError(
                    f"angles file {str(p)!r}, line {lineno}: {tok!r} is not a number (degrees)"
                ) from None
    if not values:
        raise ValueError(f"angles file {str(p)!r} holds no angles")
    try:
        return validate_angles(values, n_angles, name=f"angles file {str(p)!r}")
    except ValueError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Coverage:
    """Angular coverage of a scan, modulo 180 degrees (parallel beam).

    ``wedges`` lists the missing ranges ``(start, stop)`` in degrees within ``[0, 180)`` taken
    modulo 180 (``stop`` may exceed 180 where a wedge wraps around), ``covered`` is the covered
    range in degrees.
    """

    covered: float
    wedges: tuple[tuple[float, float], ...]
    step: float

    @property
    def missing(self) -> float:
        return float(sum(b - a for a, b in self.wedges))


def angular_coverage(angles, gap_factor: float = 2.5) -> Coverage:
    """The missing wedge(s) of a parallel-beam scan.

    A gap between neighbouring directions (modulo 180 degrees) counts as missing when it is larger
    than ``gap_factor`` times the median step; the missing part is the gap less one step.
    """
    a = np.sort(np.mod(validate_angles(angles), 180.0))
    a = np.unique(np.round(a, 9))
    if a.size == 1:
        return Coverage(0.0, ((float(a[0]), float(a[0]) + 180.0),), 180.0)
    gaps = np.diff(np.concatenate([a, [a[0] + 180.0]]))
    step = float(np.median(gaps))
    wedges = []
    for i, g in enumerate(gaps):
        if g > gap_factor * step:
            wedges.append((float(a[i]) + step / 2, float(a[i]) + g - step / 2))
    missing = sum(b - c for c, b in wedges)
    return Coverage(float(180.0 - missing), tuple(wedges), step)


def scan_centers(center: float, half_width: float, step: float) -> np.ndarray:
    """Centres ``center - half_width ... center + half_width`` in steps of ``step`` pixels."""
    if step <= 0:
        raise ValueError(f"centre scan step must be positive, got {step}")
    if half_width < 0:
        raise ValueError(f"centre scan half width must be >= 0, got {half_width}")
    k = int(np.floor(half_width / step + 1e-9))
    return float(center) + step * np.arange(-k, k + 1, dtype=np.float64)


def fbp_preview(sinograms, angles, center: float | None = None, device: str = "cpu",
                filter_name: str = "ramp") -> np.ndarray:
    """Filtered back projection of ``(n, angles, detector)`` sinograms, a fast preview.

    Uses the matrix-free projector so that the first preview of a large detector does not wait for
    a system matrix. Returns float32 ``(n, detector, detector)``.
    """
    import torch

    from .geometry import Geometry, validate_sinogram
    from .methods.fbp import fbp
    from .projector import Projector

    s = validate_sinogram(sinograms)
    if s.ndim == 2:
        s = s[None]
    a = validate_angles(angles, s.shape[1])
    proj = Projector(Geometry.create(a, s.shape[-1], center), device=device, method="rotate")
    with torch.no_grad():
        out = fbp(proj, torch.from_numpy(s).to(proj.device), filter_name=filter_name)
    return out.cpu().numpy().astype(np.float32)


def center_scan(sinogram, angles, centers, device: str = "cpu", progress=None) -> np.ndarray:
    """FBP of one sinogram ``(angles, detector)`` for each centre: ``(len(centers), D, D)``.

    ``progress``, if given, is called with the index of each finished centre.
    """
    s = np.asarray(sinogram)
    if s.ndim != 2:
        raise ValueError(f"centre scan needs one sinogram (angles, detector), got shape {s.shape}")
    centers = np.asarray(centers, dtype=np.float64).ravel()
    if centers.size == 0:
        raise ValueError("centre scan needs at least one centre")
    out = np.empty((centers.size, s.shape[1], s.shape[1]), dtype=np.float32)
    for i, c in enumerate(centers):
        out[i] = fbp_preview(s[None], angles, float(c), device=device)[0]
        if progress is not None:
            progress(i)
    return out
