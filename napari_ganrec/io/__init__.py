"""Readers and writers for tomography data.

Reading projections
-------------------
``read_tomo(path, angles=None, flats=None, darks=None, format=None) -> TomoData`` reads DXchange
HDF5, NeXus NXtomo, MRC/REC tilt series, TIFF (one multi-page file or a folder of single-page
files), ``.npy`` and ``.npz`` (layouts in ``docs/formats.md``). The format follows from the suffix
and, for HDF5, from the content.

:class:`TomoData` is a dataclass with

- ``projections``: ``(n_angles, n_rows, n_det)`` array-like, *lazy* for HDF5, MRC, TIFF and
  ``.npy`` (index it to read; only what is indexed is read);
- ``angles``: degrees, float64 ``numpy.ndarray``, one per projection;
- ``flats``, ``darks``: ``(n, n_rows, n_det)`` array-likes or ``None``;
- ``metadata``: a dict (``source``, ``format``, ``kind`` = ``"raw"`` / ``"transmission"`` /
  ``"line_integrals"``, ...);
- ``sinograms(rows=slice(a, b)) -> (n_rows, n_angles, n_det) float32``: line-integral
  sinograms of those detector rows, reading only those rows (:func:`line_integrals`); ready for
  ``napari_ganrec.reconstruct``;
- ``close()`` (also a context manager) to release the open file.

Line integrals
--------------
``line_integrals(data, rows, choice="auto", kind=None)`` is the one read path from projections to
sinograms (CLI, volume sources, widget); ``resolve_kind`` says what the data hold (a
:class:`DataKind`, ``assumed=True`` when guessed from the values); ``tomodata_from_layer`` turns a
napari layer opened by our reader back into a :class:`TomoData`. Data that cannot be made into line
integrals raise :class:`NotLineIntegralsError` (a ``ValueError``) saying why and what to do.

Writing
-------
``write_volume(path, data, metadata, overwrite=False)`` writes a reconstruction (float32) as TIFF
(multi-page, metadata as JSON in the description and in ``path.json``), HDF5 (``/volume`` with the
metadata as a JSON attribute), ``.npy`` (+ ``path.json``), ``.npz`` (+ ``metadata`` entry) or MRC
(+ ``path.json``). ``write_labels`` does the same for integer labels. Writes are atomic (temporary
file in the same folder, then ``os.replace``); an existing file is never replaced unless
``overwrite=True``. ``read_volume(path) -> (array, metadata)`` reads any of them back.

Layout: this module dispatches reading (``read_tomo``, ``detect_format``); writing and reading back
volumes is in :mod:`.volumes`, the accepted suffixes in :mod:`.suffixes`, both re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (  # noqa: F401  (SliceBlocks, atomic_paths, sidecar_path, write_json: the old names)
    LazyStack,
    SliceBlocks,
    TomoFormatError,
    atomic_paths,
    read_angle_file,
    sidecar_path,
    write_json,
)
from ._tomodata import TomoData
from .line_integrals import (
    DataKind,
    NotLineIntegralsError,
    line_integrals,
    resolve_kind,
    tomodata_from_layer,
)
from .suffixes import HDF5_SUFFIXES, HDF5_WRITE_SUFFIXES, READ_SUFFIXES, WRITE_SUFFIXES  # noqa: F401
from .volumes import read_volume, write_labels, write_volume

__all__ = [
    "TomoData",
    "DataKind",
    "NotLineIntegralsError",
    "line_integrals",
    "resolve_kind",
    "tomodata_from_layer",
    "TomoFormatError",
    "LazyStack",
    "read_tomo",
    "read_volume",
    "write_volume",
    "write_labels",
    "read_angle_file",
    "detect_format",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
]


def detect_format(path) -> str:
    """``"dxchange"``, ``"nxtomo"``, ``"hdf5-volume"``, ``"mrc"``, ``"tiff"``, ``"tiff-folder"``,
    ``"npy"`` or ``"npz"`` for ``path``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    TomoFormatError
        Unknown suffix, or an HDF5 file in no known layout.
    """
    from .mrc import MRC_SUFFIXES

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return "tiff-folder"
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        from .hdf5 import _describe, hdf5_kind, open_hdf5

        with open_hdf5(path) as f:
            kind = hdf5_kind(f)
            if kind == "unknown":
                raise TomoFormatError(
                    path, "an HDF5 file without the expected datasets: neither DXchange "
                    "(/exchange/data) nor NeXus NXtomo (image_key + detector data) nor a "
                    f"napari-ganrec volume; it holds {_describe(f)}"
                )
        return "hdf5-volume" if kind == "volume" else kind
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    raise TomoFormatError(
        path, f"unknown file type {suffix!r}; readable: {', '.join(READ_SUFFIXES)} or a folder "
        "of TIFF files"
    )


def _load_field(value, name: str):
    """Flats/darks given as a path are read whole (they are small); arrays pass through."""
    if value is None or not isinstance(value, (str, Path)):
        return value
    path = Path(value)
    fmt = detect_format(path)
    if fmt == "tiff":
        from .tiff import read_tiff_volume

        return read_tiff_volume(path)[0]
    if fmt == "tiff-folder":
        from .tiff import read_tiff_folder

        # flats/darks have no angles: distinct placeholder degrees (not all equal, not radian-like)
        data = read_tiff_folder(path, angles=10.0 * np.arange(_n_tiffs(path), dtype=np.float64))
        return np.asarray(data.projections[:])
    if fmt in ("npy", "npz"):
        from .numpy_io import read_numpy_volume

        return read_numpy_volume(path)[0] if fmt == "npy" else _npz_first(path)
    if fmt == "mrc":
        from .mrc import read_mrc_volume

        return read_mrc_volume(path)[0]
    raise TomoFormatError(path, f"{name} must be a TIFF, NumPy or MRC file")


def _n_tiffs(folder) -> int:
    return sum(1 for p in Path(folder).iterdir() if p.suffix.lower() in (".tif", ".tiff"))


def _npz_first(path):
    from .numpy_io import _open_npz

    with _open_npz(path) as z:
        keys = [k for k in z.files if k != "metadata"]
        if not keys:
            raise TomoFormatError(path, "the archive holds no array")
        return z[keys[0]]


def read_tomo(path, angles=None, flats=None, darks=None, format: str | None = None,
              tilt_axis: str | None = None) -> TomoData:
    """Read a projection stack with its angles (degrees), flats, darks and metadata.

    Parameters
    ----------
    path : str or Path
        A file, or a folder of single-page TIFF files.
    angles : array-like or path, optional
        Angles in degrees (one per projection), or a text file of them. Overrides the file's.
        Angles that look like radians give a warning.
    flats, darks : array-like or path, optional
        Flat and dark fields for formats that do not carry them (TIFF, NumPy, MRC); a path is
        read with the same readers.
    format : str, optional
        Force a format (see :func:`detect_format`).
    tilt_axis : {"auto", "y", "x"}, optional
        MRC tilt series only: the image axis the tilt axis runs along (default ``"auto"``:
        detected from the data, y when unclear, see :func:`napari_ganrec.io.mrc.read_mrc`).

    Returns
    -------
    TomoData
        Lazy where the format allows; close it (or use ``with``) to release the file.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    TomoFormatError
        (a ``ValueError``) naming the file and the problem: empty or truncated file, missing
        datasets, angle count mismatch, flats/darks of another shape, non-finite values, a
        detector narrower than 2 pixels.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    flats = _load_field(flats, "flats")
    darks = _load_field(darks, "darks")
    if fmt == "dxchange":
        from .hdf5 import read_dxchange

        data = read_dxchange(path, angles)
    elif fmt == "nxtomo":
        from .hdf5 import read_nxtomo

        data = read_nxtomo(path, angles)
    elif fmt == "hdf5-volume":
        raise TomoFormatError(path, "this HDF5 file holds a reconstructed volume, not "
                              "projections; open it with read_volume")
    elif fmt == "mrc":
        from .mrc import read_mrc

        data = read_mrc(path, angles, tilt_axis=tilt_axis)
    elif fmt == "tiff":
        from .tiff import read_tiff

        data = read_tiff(path, angles)
    elif fmt == "tiff-folder":
        from .tiff import read_tiff_folder

        data = read_tiff_folder(path, angles)
    elif fmt == "npy":
        from .numpy_io import read_npy

        data = read_npy(path, angles)
    elif fmt == "npz":
        from .numpy_io import read_npz

        data = read_npz(path, angles)
    else:
        raise ValueError(f"format must be one of dxchange, nxtomo, mrc, tiff, tiff-folder, npy, "
                         f"npz; got {fmt!r}")
    if tilt_axis not in (None, "auto", "y") and fmt != "mrc":
        data.close()
        raise ValueError(f"tilt_axis={tilt_axis!r} is for MRC tilt series; turn other stacks with "
                         "napari_ganrec.preprocess.orient_axis")
    try:
        if flats is not None:
            data.flats = _check_field(flats, data, path, "flats")
        elif isinstance(data.flats, np.ndarray):  # from an archive (.npz): checked like an argument
            data.flats = _check_field(data.flats, data, path, "flats")
        if darks is not None:
            data.darks = _check_field(darks, data, path, "darks")
        elif isinstance(data.darks, np.ndarray):
            data.darks = _check_field(data.darks, data, path, "darks")
    except BaseException:
        data.close()
        raise
    return data


def _check_field(field, data: TomoData, path, name: str):
    from ._common import check_dtype

    check_dtype(getattr(field, "dtype", np.asarray(field).dtype), path, name)
    arr = np.asarray(field, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != data.shape[1:]:
        raise TomoFormatError(
            path, f"{name} have frames of shape {arr.shape[1:]} but the projections have "
            f"{data.shape[1:]}"
        )
    if not np.all(np.isfinite(arr)):
        raise TomoFormatError(path, f"{name} contain NaN or infinite values")
    return arr
