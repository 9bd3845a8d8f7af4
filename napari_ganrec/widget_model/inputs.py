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

from ..geometry import validate_angles
from .binning import BINNINGS, Binning

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
    "scan_centers",
    "BINNINGS",
    "Binning",
    "projection_view",
    "layer_line_integrals",
    "cpu_hint",
    "CPU_HINT_PX",
]

#: Slices wider than this many pixels get a hint to bin when they are about to run on the CPU.
CPU_HINT_PX = 512

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
    from ..io import TomoFormatError, read_angle_file

    p = Path(path)
    try:
        values = read_angle_file(p)
    except TomoFormatError as exc:
        sep = ", " if exc.problem.startswith("line") else " "
        raise ValueError(f"angles file {str(p)!r}{sep}{exc.problem}") from None
    except OSError as exc:
        raise ValueError(f"angles file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
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

    from ..geometry import Geometry, validate_sinogram
    from ..methods.fbp import fbp
    from ..projector import Projector

    s = validate_sinogram(sinograms)
    if s.ndim == 2:
        s = s[None]
    a = validate_angles(angles, s.shape[1])
    proj = Projector(Geometry.create(a, s.shape[-1], center), device=device, method="rotate")
    with torch.no_grad():
        out = fbp(proj, torch.from_numpy(s).to(proj.device), filter_name=filter_name)
    return out.cpu().numpy().astype(np.float32)


def projection_view(data, layout: str = "vertical", metadata: Mapping | None = None):
    """An image in any layout as a projection stack ``(angles, rows, detector)``, and its metadata.

    No data are read (the view of a dask array stays lazy). A ``"horizontal"`` tilt series is
    transposed (with its flats and darks), a sinogram stack ``(slices, angles, detector)`` moved
    to ``(angles, slices, detector)``, a 2-D sinogram becomes one row.
    """
    md = dict(metadata or {})
    shape = tuple(np.shape(data))
    info = input_shape(shape, layout)
    if info.layout == "sinogram":
        return data[:, None, :], md
    if info.layout == "vertical":
        return data, md
    if info.layout == "horizontal":
        for key in ("flats", "darks"):
            f = md.get(key)
            if f is not None and np.ndim(f) == 3:
                md[key] = np.swapaxes(np.asarray(f), 1, 2)
        return data.transpose(0, 2, 1), md
    return data.transpose(1, 0, 2), md


def layer_line_integrals(data, metadata: Mapping | None, layout: str, angles, start: int, stop: int,
                         choice: str = "auto"):
    """Line-integral sinograms ``(stop - start, angles, detector)`` of an image layer's slices.

    The one read path of the CLI (:func:`napari_ganrec.io.line_integrals` on
    :func:`napari_ganrec.io.tomodata_from_layer`): raw counts are flat/dark corrected with the
    flats and darks the reader left in ``metadata`` and ``-log``'d, transmission is ``-log``'d,
    line integrals (e.g. a pre-processed layer) are used as they are.

    Returns
    -------
    (numpy.ndarray, DataKind)
        The sinograms and what the data were taken for (and why).

    Raises
    ------
    NotLineIntegralsError
        When the slices cannot be made into line integrals (says why and what to do).
    ValueError
        Bad slice range, layout or angles.
    """
    from ..io import line_integrals, resolve_kind, tomodata_from_layer

    info = input_shape(tuple(np.shape(data)), layout)
    start, stop = _slice_range(start, stop, info.n_slices)
    view, md = projection_view(data, layout, metadata)
    tomo = tomodata_from_layer(view, md, angles=np.asarray(angles, dtype=np.float64))
    rows = slice(start, stop)
    kind = resolve_kind(tomo, choice, rows)
    return line_integrals(tomo, rows, kind=kind), kind


def cpu_hint(n_det: int, device: str, factor: int = 1) -> str:
    """A one-line hint to bin when a slice wider than :data:`CPU_HINT_PX` is about to run on the
    CPU (``""`` otherwise). ``n_det`` is the detector width after binning by ``factor``."""
    if int(n_det) <= CPU_HINT_PX:
        return ""
    try:
        from ..projector import resolve_device

        dev = str(resolve_device(device))
    except ValueError:
        dev = str(device)
    if not dev.startswith("cpu"):
        return ""
    better = [b for b in BINNINGS if b > factor and int(n_det) * factor // b <= CPU_HINT_PX]
    advice = f"choose binning {better[0]}" if better else "bin more"
    return (f"{int(n_det)} px slices on the CPU take minutes per run: {advice} for a first look, or run "
            "on a GPU")
