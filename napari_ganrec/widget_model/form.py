"""What the reconstruction form's choices mean, without Qt: data kinds, angle sources, the run's context.

The dock widget reads its boxes and hands the plain values to these functions, so what a choice does
can be tested without a GUI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import angles_from_range
from .inputs import Binning, InputShape, angles_from_metadata, read_angles_file, scan_centers

#: Where the angles come from (the labels of the widget's 'from' box).
ANGLE_SOURCES = ("layer metadata", "range", "file")
#: What the input holds (the CLI's --data), label -> choice of :func:`napari_ganrec.io.line_integrals`
DATA_CHOICES = {"auto (from the file)": "auto", "raw counts": "raw", "transmission": "transmission",
                "line integrals": "line-integrals"}

_KIND_TEXT = {"raw": "raw counts: flat/dark corrected and -log'd before the run",
              "transmission": "transmission: -log'd before the run",
              "line_integrals": "line integrals: used as they are"}


def data_kind_text(kind: str, reason: str, assumed: bool) -> str:
    """The sentence saying what the input is taken for and why.

    Parameters
    ----------
    kind : str
        ``"raw"``, ``"transmission"`` or ``"line_integrals"`` (:class:`napari_ganrec.io.DataKind`).
    reason : str
        Where that comes from.
    assumed : bool
        Whether it was guessed from the values.

    Returns
    -------
    str
        e.g. ``"line integrals: used as they are (assumed: values look like -log)"``.
    """
    if kind not in _KIND_TEXT:
        raise ValueError(f"kind must be one of {tuple(_KIND_TEXT)}, got {kind!r}")
    return f"{_KIND_TEXT[kind]} ({'assumed: ' if assumed else ''}{reason})"


def choose_angles(source: str, *, layer_name: str, metadata: Mapping | None, n_angles: int,
                  file_path: str = "", start: float = 0.0, stop: float = 180.0) -> np.ndarray:
    """The projection angles (degrees) a run uses, from the chosen source.

    Parameters
    ----------
    source : str
        One of :data:`ANGLE_SOURCES`.
    layer_name : str
        The input layer's name (for the message).
    metadata : mapping or None
        The input layer's metadata (``"layer metadata"``).
    n_angles : int
        The image's angle axis: the count every source must give.
    file_path : str
        The angles file (``"file"``).
    start, stop : float
        The range (``"range"``), as :func:`napari_ganrec.geometry.angles_from_range` takes it.

    Raises
    ------
    ValueError
        An unknown source, no angles in the metadata or file, or a count that differs from the image.
    """
    if source == "layer metadata":
        a = angles_from_metadata(metadata, n_angles)
        if a is None:
            raise ValueError(f"layer {layer_name!r} has no 'angles' metadata with "
                             f"{n_angles} values; choose 'range' or 'file'")
        return a
    if source == "file":
        path = file_path.strip()
        if not path:
            raise ValueError("choose an angles file (or another angle source)")
        return read_angles_file(path, n_angles)
    if source == "range":
        return angles_from_range(start, stop, n_angles)
    raise ValueError(f"angle source must be one of {ANGLE_SOURCES}, got {source!r}")


def scan_plan(center: float, half_width: float, step: float, n_det: int,
              binning: Binning) -> tuple[np.ndarray, np.ndarray]:
    """The centres of a centre scan: in detector pixels of the input, and on the binned slice.

    Centres outside the detector ``[0, n_det]`` are left out.

    Returns
    -------
    centers, binned : ndarray
        Input-pixel centres (for the user and the layer metadata) and the same centres binned (for the run).
    """
    centers = scan_centers(center, half_width, step)
    centers = centers[(centers >= 0) & (centers <= n_det)]
    return centers, np.array([binning.center(c) for c in centers])


def run_context(*, source: str, layer_scale: tuple[float, ...], info: InputShape, binning: Binning,
                center: float, center_binned: float, center_method: str, kind: str, kind_reason: str,
                rows_read: tuple[int, int], slices: tuple[int, int]) -> dict[str, Any]:
    """Where a run's result comes from and how it is drawn: the keywords of ``RunController.start``.

    Parameters
    ----------
    source : str
        The input layer's name.
    layer_scale : tuple of float
        The input layer's ``scale`` (its detector axis gives the result's pixel size).
    info : InputShape
        The input's layout and sizes.
    binning : Binning
        The binning of the run (it multiplies the pixel size).
    center, center_binned : float
        The centre in input pixels and on the binned detector.
    center_method : str
        How the centre was chosen (the automatic method, ``"typed"`` or ``"centre scan"``).
    kind, kind_reason : str
        What the input was taken for, and why.
    rows_read : (int, int)
        The input rows read (binning may widen the range).
    slices : (int, int)
        The slice range asked for (``None`` in the context for a single sinogram).
    """
    det_scale = float(layer_scale[-1] if info.layout != "horizontal" else layer_scale[-2])
    b = binning.factor
    extra = {
        "center": float(center),
        "center_binned": float(center_binned),
        "center_method": center_method,
        "data_kind": kind,
        "data_kind_reason": kind_reason,
        "binning": binning.metadata(),
        "rows_read": [int(rows_read[0]), int(rows_read[1])],
    }
    return dict(
        source=source,
        slices=None if info.layout == "sinogram" else (int(slices[0]), int(slices[1])),
        layout=info.layout,
        scale=(det_scale * b, det_scale * b),
        slice_scale=float(binning.row_factor),
        extra=extra,
    )


def auto_center_job(data, metadata: Mapping | None, *, layout: str, angles, row: int, choice: str,
                    identity: tuple = ()) -> tuple[tuple, Any, int]:
    """The automatic centre of one row, as a job a worker thread can run: ``(key, compute, row)``.

    Parameters
    ----------
    data : array_like
        The input image (read in ``compute``, not here).
    metadata : mapping or None
        Its metadata (copied now: the worker never sees the layer).
    layout, choice : str
        The input's layout and what it holds (the CLI's ``--data``).
    angles : array_like
        The projection angles (degrees).
    row : int
        The row (slice) the centre is found on.
    identity : tuple
        What identifies the input beyond these values (ids of the layer and its data).

    Returns
    -------
    key : tuple
        Equal for two jobs that would find the same centre.
    compute : callable
        ``compute() -> CenterEstimate`` (``ValueError`` where no centre can be found).
    row : int
    """
    from ..center import estimate_center
    from .inputs import layer_line_integrals

    angles = np.asarray(angles, dtype=np.float64)
    md = dict(metadata or {})
    key = (*identity, layout, int(row), choice, tuple(float(a) for a in angles))

    def compute():
        sino, _ = layer_line_integrals(data, md, layout, angles, row, row + 1, choice)
        return estimate_center(sino[0], angles)

    return key, compute, int(row)


@dataclass(frozen=True)
class PreparedInput:
    """The sinograms of a run, binned, and where they come from.

    Attributes
    ----------
    sinograms : ndarray
        ``(slices, angles, detector)`` after binning.
    kind : object
        What the input was taken for (:class:`napari_ganrec.io.DataKind`, as ``read`` returned it).
    rows_read, slices : (int, int)
        The input rows read and the slice range asked for.
    center, center_binned : float
        The centre in input pixels and on the binned detector.
    """

    sinograms: np.ndarray
    kind: Any
    rows_read: tuple[int, int]
    slices: tuple[int, int]
    center: float
    center_binned: float


def prepare_input(read: Callable, center: Callable[[], float], *, angles, binning: Binning,
                  slices: tuple[int, int], n_slices: int, preview: bool = False) -> PreparedInput:
    """Read, bin and check the input of a run (or of a preview: the first binned slice only).

    Parameters
    ----------
    read : callable
        ``read(r0, r1) -> (sinograms, kind)``: line integrals of input rows ``r0:r1``.
    center : callable
        ``center() -> float``: the centre in input pixels (asked after the read, as it may be found
        on the data).
    angles : array_like
        The projection angles (degrees).
    binning : Binning
        The binning of the run.
    slices : (int, int)
        The slice range ``(start, stop)``.
    n_slices : int
        The input's slice count (a preview stops there).
    preview : bool
        Only the first (binned) slice of the range.

    Raises
    ------
    ValueError
        A slice range too short for the binning, or a centre outside the binned detector (and whatever
        ``read`` or ``center`` raise).
    """
    from ..geometry import Geometry

    start, stop = int(slices[0]), int(slices[1])
    if preview:
        stop = min(start + binning.row_factor, int(n_slices))
    r0, r1 = binning.rows_used(start, stop)
    sinos, kind = read(r0, r1)
    sinos = binning.apply(sinos)
    center_px = float(center())
    c = binning.center(center_px)
    Geometry.create(angles, sinos.shape[-1], c)  # validates the centre now
    return PreparedInput(sinos, kind, (r0, r1), (start, stop), center_px, c)
