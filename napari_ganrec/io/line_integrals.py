"""The one read path from a projection stack to line integrals.

Every caller (the CLI's single-slice and volume paths, the volume sources, the widget) turns
projections into sinograms with :func:`line_integrals`, so one slice reads exactly like many.

What the data hold (:func:`resolve_kind`), in this order:

1. ``choice`` given (``--data raw|transmission|line-integrals``): that.
2. The file says it: our own metadata (``kind`` in the TIFF description, the JSON side-car, the
   ``.npz`` metadata, a layer's metadata), e.g. ``"line_integrals"`` written by the pre-processing
   widget. A reconstruction or labels volume is refused.
3. The file has flats or darks: raw counts.
4. The format's convention (``metadata["format_kind"]``, ``metadata["format_kind_reason"]``):
   NXtomo ``image_key`` frames are raw counts; an MRC tilt series holds electron-microscope
   intensities used as they are (IMOD convention: no flats, no ``-log``).
5. Otherwise a guess from the values, flagged ``assumed=True`` (callers warn and name ``--data``):

   - values clearly below zero: line integrals (intensities cannot be negative);
   - integers above 1.05: raw counts (detectors count in integers; line integrals are floats);
   - else the detector edges (air, outside the sample) decide: bright edges (median of the outer
     columns >= half the maximum) are intensities: transmission when the maximum is <= 1.05,
     raw counts otherwise (then flats are needed: an error, never a silent ``-log`` of counts);
     dark edges (air ~ 0) are line integrals. So weakly absorbing line integrals, all below
     1.05, are *not* taken for transmission: their air is 0, not 1. This is also what a TomoPy
     user expects: ``tomopy.recon`` takes the data as line integrals unless told otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._tomodata import TomoData

__all__ = [
    "DataKind",
    "NotLineIntegralsError",
    "KINDS",
    "DATA_CHOICES",
    "normalize_choice",
    "resolve_kind",
    "line_integrals",
    "tomodata_from_layer",
]

KINDS = ("raw", "transmission", "line_integrals")
DATA_CHOICES = ("auto",) + KINDS
#: fraction of the flat pixels of a read that may be not above the dark (dead pixels), and of the
#: projection pixels that may be at or below it (noise in opaque regions), before it is an error
#: rather than pixels floored with a warning; also the fraction of "transmission" values <= 0
BAD_PIXEL_FRACTION = 0.01
BELOW_DARK_FRACTION = 0.05
MIN_TRANSMISSION = 1e-6


@dataclass(frozen=True)
class DataKind:
    """What a projection stack holds, and why we think so.

    Attributes
    ----------
    kind : str
        ``"raw"`` (counts; flats/darks applied, then ``-log``), ``"transmission"`` (``I/I0``;
        ``-log``) or ``"line_integrals"`` (used as they are).
    reason : str
        A sentence saying where this comes from ("the file has flats and darks", ...).
    assumed : bool
        True when guessed from the values; callers then warn and name ``--data``.
    """

    kind: str
    reason: str
    assumed: bool = False

    def describe(self) -> str:
        """``"line integrals (assumed: ...)"``: the kind and its reason, for messages."""
        return f"{self.kind.replace('_', ' ')} ({self.reason})"


class NotLineIntegralsError(ValueError):
    """The data cannot be made into line integrals; the message says why and what to do."""


def normalize_choice(choice: str | None) -> str:
    """``"line-integrals"`` -> ``"line_integrals"``; a ``ValueError`` for unknown choices."""
    c = "auto" if choice is None else str(choice).strip().lower().replace("-", "_").replace(" ", "_")
    if c not in DATA_CHOICES:
        raise ValueError(
            f"data must be one of auto, raw, transmission, line-integrals; got {choice!r}"
        )
    return c


def _source(data: TomoData) -> str:
    return str(data.metadata.get("source", "the data"))


def _row_slice(rows, n_rows: int) -> slice:
    if rows is None:
        return slice(0, n_rows)
    if isinstance(rows, (int, np.integer)):
        r = int(rows)
        if not -n_rows <= r < n_rows:
            raise ValueError(f"rows: row {r} is outside the detector (0..{n_rows - 1})")
        r %= n_rows
        return slice(r, r + 1)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n_rows)
        if step != 1:
            raise ValueError(f"rows: a range of rows takes no step, got {rows}")
        if stop <= start:
            raise ValueError(f"rows {rows} selects none of the {n_rows} detector rows")
        return slice(start, stop)
    raise ValueError(f"rows must be an int, a slice or None, got {type(rows).__name__}")


def _sample(data: TomoData, rows: slice, max_frames: int = 8, max_rows: int = 32) -> np.ndarray:
    """A few frames (evenly spaced angles) of up to ``max_rows`` rows, float32."""
    n = data.n_angles
    frames = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    n_sel = rows.stop - rows.start
    picks = np.unique(np.linspace(rows.start, rows.stop - 1, min(n_sel, max_rows)).round().astype(int))
    parts = []
    for i in frames:
        frame = np.asarray(data.projections[int(i)])
        parts.append(frame[picks])
    return np.asarray(np.stack(parts), dtype=np.float32)


def _guess(data: TomoData, rows: slice) -> DataKind:
    sample = _sample(data, rows)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise NotLineIntegralsError(f"{_source(data)}: the projections hold no finite values")
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        raise NotLineIntegralsError(
            f"{_source(data)}: the projections sampled are all {lo:g}: nothing to reconstruct (a blank or "
            "unwritten file?); if that is really so, say what they are with --data"
        )
    dtype = np.dtype(getattr(data.projections, "dtype", sample.dtype))
    scale = max(abs(lo), abs(hi), 1e-12)
    if lo < -0.05 * scale:
        return DataKind("line_integrals", f"assumed: values go down to {lo:.3g}, which neither counts "
                        "nor transmission can", True)
    if dtype.kind in "iu" and hi > 1.05:
        return DataKind("raw", f"assumed: no flats or darks, integer values ({dtype}) up to {hi:.6g}, as raw "
                        "detector counts", True)
    k = max(1, data.n_det // 20)
    edges = np.concatenate([sample[..., :k].ravel(), sample[..., -k:].ravel()])
    edges = edges[np.isfinite(edges)]
    edge = float(np.median(edges)) if edges.size else 0.0
    if hi > 0 and edge >= 0.5 * hi:
        if hi <= 1.05:
            return DataKind("transmission", f"assumed: no flats or darks, values in [{lo:.3g}, {hi:.3g}] "
                            f"with bright detector edges (air at {edge:.3g}), as transmission I/I0", True)
        return DataKind("raw", f"assumed: no flats or darks, values up to {hi:.6g} ({dtype}) with bright "
                        f"detector edges (air at {edge:.6g}), as raw detector counts", True)
    return DataKind("line_integrals", f"assumed: no flats or darks, values in [{lo:.3g}, {hi:.3g}] with "
                    f"dark detector edges (air at {edge:.3g}), as line integrals (after -log)", True)


def resolve_kind(data: TomoData, choice: str = "auto", rows: slice | None = None) -> DataKind:
    """What ``data`` holds: raw counts, transmission or line integrals (see the module docstring).

    Parameters
    ----------
    data : TomoData
        The projection stack (flats, darks and metadata are looked at).
    choice : str
        ``"auto"`` or what the user says: ``"raw"``, ``"transmission"``, ``"line-integrals"``.
    rows : slice, optional
        Rows the value-based guess samples (at most 32 of them, 8 angles). Default: the whole
        detector, so that a run of one slice and a run of many guess alike.

    Returns
    -------
    DataKind

    Raises
    ------
    ValueError
        Unknown ``choice``.
    NotLineIntegralsError
        The file holds a reconstruction or labels, not projections.
    """
    c = normalize_choice(choice)
    if c != "auto":
        return DataKind(c, f"given: --data {c.replace('_', '-')}", False)
    meta = data.metadata or {}
    declared = meta.get("kind")
    if declared in ("reconstruction", "labels"):
        raise NotLineIntegralsError(
            f"{_source(data)}: the file holds a {declared} volume (metadata kind={declared!r}), not "
            "projections; open it as a volume (read_volume), or pass --data if it really is a "
            "projection stack"
        )
    if declared in KINDS:
        return DataKind(declared, f"the file's metadata says kind={declared!r}", False)
    if data.flats is not None and data.darks is not None:
        return DataKind("raw", "the file has flats and darks", False)
    if data.flats is not None:
        return DataKind("raw", "the file has flats (no darks: dark taken as 0)", False)
    if data.darks is not None:
        return DataKind("raw", "the file has darks (but no flats)", False)
    conventional = meta.get("format_kind")
    if conventional in KINDS:
        return DataKind(conventional, meta.get("format_kind_reason") or f"the {meta.get('format', 'file')} "
                        f"format holds {conventional.replace('_', ' ')}", False)
    return _guess(data, _row_slice(rows, data.n_rows))


def _what_to_do(kind: DataKind) -> str:
    return (f"the data were taken as {kind.describe()}; if they are something else, say so with "
            "--data raw|transmission|line-integrals (data= in the API)")


def _check_finite(arr: np.ndarray, what: str, data: TomoData, rows: slice) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise NotLineIntegralsError(
            f"{_source(data)}: the {what} of rows {rows.start}:{rows.stop} contain {bad} NaN or infinite "
            "value(s); the file is corrupt there (crop those rows away, or repair the file)"
        )


def _mean_frame(field, rows: slice) -> np.ndarray:
    arr = np.asarray(field[:, rows, :], dtype=np.float32)
    return np.mean(arr, axis=0, dtype=np.float64).astype(np.float32)


def _from_raw(data: TomoData, proj: np.ndarray, rows: slice, kind: DataKind) -> np.ndarray:
    src = _source(data)
    if data.flats is None:
        has = "darks but no flats" if data.darks is not None else "no flats"
        raise NotLineIntegralsError(
            f"{src}: raw counts need flats (open-beam images) to become transmission, and the file has "
            f"{has}; give flats (CLI --flats FILE, API read_tomo(..., flats=file or array)), or if the "
            f"values are already normalised say --data transmission, or --data line-integrals when they are after -log "
            f"({_what_to_do(kind)})"
        )
    from ..preprocess import check_flats_darks

    flat = _mean_frame(data.flats, rows)
    dark = _mean_frame(data.darks, rows) if data.darks is not None else np.zeros_like(flat)
    _check_finite(flat, "flats", data, rows)
    _check_finite(dark, "darks", data, rows)
    try:
        below, not_above = check_flats_darks(proj, flat, dark, max_bad_fraction=BAD_PIXEL_FRACTION,
                                             max_below_fraction=BELOW_DARK_FRACTION)
    except ValueError as exc:
        raise NotLineIntegralsError(
            f"{src}: rows {rows.start}:{rows.stop}: {exc}; if the data are not raw counts, say "
            "--data transmission or --data line-integrals"
        ) from None
    if below or not_above:
        warnings.warn(
            f"{src}: {below} projection pixel(s) at or below the dark and {not_above} flat pixel(s) not "
            f"above it in rows {rows.start}:{rows.stop}; they are floored at transmission "
            f"{MIN_TRANSMISSION:g} (line integral {-np.log(MIN_TRANSMISSION):.3g})",
            UserWarning, stacklevel=3,
        )
    num = proj - dark
    span = flat - dark
    t = num / np.maximum(span, MIN_TRANSMISSION)
    return _minus_log(t)


def _minus_log(t: np.ndarray) -> np.ndarray:
    return (-np.log(np.maximum(t, MIN_TRANSMISSION))).astype(np.float32)


def _from_transmission(data: TomoData, proj: np.ndarray, rows: slice, kind: DataKind) -> np.ndarray:
    src = _source(data)
    hi = float(proj.max())
    if hi > 2.0:
        raise NotLineIntegralsError(
            f"{src}: values up to {hi:.6g} in rows {rows.start}:{rows.stop} are not transmission (I/I0 is "
            f"at most about 1); raw counts need flats (pass flats=, --data raw), line integrals say "
            f"--data line-integrals ({_what_to_do(kind)})"
        )
    bad = int(np.count_nonzero(proj <= 0))
    if bad > BAD_PIXEL_FRACTION * proj.size:
        raise NotLineIntegralsError(
            f"{src}: {bad} of {proj.size} values of rows {rows.start}:{rows.stop} are <= 0, which no "
            f"transmission is; line integrals say --data line-integrals ({_what_to_do(kind)})"
        )
    if bad:
        warnings.warn(f"{src}: {bad} transmission value(s) <= 0 in rows {rows.start}:{rows.stop} are "
                      f"floored at {MIN_TRANSMISSION:g}", UserWarning, stacklevel=3)
    return _minus_log(proj)


def line_integrals(data: TomoData, rows: slice | int | None = None, choice: str = "auto",
                   kind: DataKind | None = None) -> np.ndarray:
    """Sinograms of line integrals of detector rows ``rows``, reading only those rows.

    Parameters
    ----------
    data : TomoData
        A projection stack ``(n_angles, n_rows, n_det)`` with its flats, darks and metadata.
    rows : slice or int, optional
        Detector rows (along the rotation axis). Default: all.
    choice : str
        What the data hold, as ``--data``: ``"auto"`` (see :func:`resolve_kind`), ``"raw"``,
        ``"transmission"``, ``"line-integrals"``. Ignored when ``kind`` is given.
    kind : DataKind, optional
        A kind resolved once (e.g. by the CLI for a whole volume), so every slab reads alike.

    Returns
    -------
    numpy.ndarray
        ``(n_rows_selected, n_angles, n_det)`` float32, finite. Raw counts are flat/dark
        corrected and ``-log``'d, transmission is ``-log``'d, line integrals are used as they are.

    Raises
    ------
    NotLineIntegralsError
        Raw counts without flats, all-zero flats, darks brighter than flats, counts below the
        dark, values that are no transmission, NaN/inf in the rows read: each with what to do.
    ValueError
        Bad ``rows`` or ``choice``.

    Warns
    -----
    UserWarning
        When ``kind`` is None and the kind had to be guessed from the values; when a few
        pixels (<= 1 %) had to be floored.
    """
    sel = _row_slice(rows, data.n_rows)
    if kind is None:
        kind = resolve_kind(data, choice)
        if kind.assumed:
            warnings.warn(f"{_source(data)}: {kind.reason}; if that is wrong, say what the data are with "
                          "--data raw|transmission|line-integrals (data= in the API)", UserWarning,
                          stacklevel=2)
    if kind.kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind.kind!r}")
    proj = np.asarray(data.projections[:, sel, :], dtype=np.float32)
    if proj.ndim == 2:  # a 2-D projection array seen as one detector row
        proj = proj[:, None, :]
    _check_finite(proj, "projections", data, sel)
    if kind.kind == "raw":
        out = _from_raw(data, proj, sel, kind)
    elif kind.kind == "transmission":
        out = _from_transmission(data, proj, sel, kind)
    else:
        out = proj
    return np.ascontiguousarray(out.transpose(1, 0, 2), dtype=np.float32)


def tomodata_from_layer(data, metadata: Mapping, angles=None) -> TomoData:
    """A napari layer opened by our reader back into a :class:`TomoData`.

    Parameters
    ----------
    data : array-like
        The layer data: a projection stack ``(n_angles, n_rows, n_det)`` (numpy or dask), or one
        sinogram ``(n_angles, n_det)``.
    metadata : Mapping
        ``layer.metadata``: ``angles_deg`` (or ``angles``), ``flats``, ``darks``, ``kind`` (with
        ``format_kind``), ``source``, ... as our reader and the pre-processing
        widget write them. A pre-processed layer (``kind="line_integrals"``) is not corrected again.
    angles : array-like, optional
        Angles (degrees) overriding the metadata's.

    Returns
    -------
    TomoData
        Reading it with :func:`line_integrals` gives what the CLI gives for the file.

    Raises
    ------
    ValueError
        Data that are not 2-D/3-D, no angles, or angles/flats/darks that do not match the data.
    """
    meta = dict(metadata or {})
    shape = tuple(int(s) for s in getattr(data, "shape", np.shape(data)))
    if len(shape) == 2:
        data = np.asarray(data)[:, None, :]
        shape = (shape[0], 1, shape[1])
    if len(shape) != 3:
        raise ValueError(f"the layer must be a projection stack (angles, rows, detector), got shape {shape}")
    if angles is None:
        angles = meta.get("angles_deg", meta.get("angles"))
    if angles is None:
        raise ValueError("the layer carries no projection angles (metadata 'angles_deg'); give angles "
                         "(degrees)")
    a = np.asarray(angles, dtype=np.float64).ravel()
    if a.size != shape[0]:
        raise ValueError(f"{a.size} angles for a layer of {shape[0]} projections; give one angle per "
                         "projection (degrees)")
    fields = {}
    for name in ("flats", "darks"):
        f = meta.pop(name, None)
        if f is not None:
            f = np.asarray(f, dtype=np.float32)
            if f.ndim == 2:
                f = f[None]
            if f.ndim != 3 or f.shape[1:] != shape[1:]:
                raise ValueError(f"the layer's {name} have frames of shape {f.shape[1:]} but the projections "
                                 f"have {shape[1:]}")
        fields[name] = f
    for name in ("angles_deg", "angles", "axes"):
        meta.pop(name, None)
    return TomoData(data, a, fields["flats"], fields["darks"], meta)
