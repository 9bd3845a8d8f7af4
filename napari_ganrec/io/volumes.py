"""Writing reconstructions and labels (:func:`write_volume`, :func:`write_labels`, atomic, with their
metadata) and reading them back (:func:`read_volume`): the format is chosen by the suffix.

Re-exported by :mod:`napari_ganrec.io`, the documented entry point; the per-format writers are in
its ``tiff``, ``hdf5``, ``numpy_io`` and ``mrc`` modules.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from ._common import SliceBlocks, TomoFormatError, atomic_paths, sidecar_path, write_json
from .suffixes import HDF5_SUFFIXES, HDF5_WRITE_SUFFIXES, WRITE_SUFFIXES

__all__ = ["write_volume", "write_labels", "read_volume"]


def _full_metadata(metadata: dict | None, kind: str) -> dict:
    from .. import __version__

    meta = dict(metadata or {})
    meta.setdefault("kind", kind)
    meta.setdefault("version", __version__)
    meta.setdefault("software", "napari-ganrec")
    meta.setdefault("written", datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    return meta


def _is_lazy(data) -> bool:
    """An array-like that is not in memory (Zarr, HDF5 dataset): written block by block."""
    return (not isinstance(data, np.ndarray) and hasattr(data, "shape") and hasattr(data, "dtype")
            and hasattr(data, "__getitem__"))


def _write(path, data, meta: dict, overwrite: bool, name: str, compression=None, attrs=None,
           sidecar: bool = True) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"cannot write {path}: unknown output type {suffix!r}; use one of "
                         f"{', '.join(WRITE_SUFFIXES)}")
    arr = data if isinstance(data, SliceBlocks) else np.asarray(data)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ValueError(f"cannot write {path}: data must be a non-empty 2-D or 3-D array, "
                         f"got shape {arr.shape}")
    if not isinstance(arr, SliceBlocks) and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"cannot write {path}: the data contain NaN or infinite values")
    with_sidecar = sidecar and suffix in (".tif", ".tiff", ".npy", ".mrc", ".rec")
    targets = [path, sidecar_path(path)] if with_sidecar else [path]
    with atomic_paths(*targets, overwrite=overwrite) as tmps:
        if suffix in (".tif", ".tiff"):
            from .tiff import write_tiff

            write_tiff(tmps[0], arr, meta, compression=compression)
        elif suffix in HDF5_WRITE_SUFFIXES:
            from .hdf5 import write_hdf5

            write_hdf5(tmps[0], arr, meta, name=name, attrs=attrs)
        elif suffix == ".npy":
            from .numpy_io import write_npy

            write_npy(tmps[0], arr, meta)
        elif suffix == ".npz":
            from .numpy_io import write_npz

            write_npz(tmps[0], np.asarray(arr), meta, name=name)
        else:
            from .mrc import write_mrc

            write_mrc(tmps[0], np.asarray(arr), meta)
        if with_sidecar:
            write_json(tmps[1], meta)
    return path


def write_volume(path, data, metadata: dict | None = None, overwrite: bool = False, *,
                 dataset: str = "volume", chunk: int = 16, attrs: dict | None = None) -> Path:
    """Write a reconstruction as float32, atomically, with its parameters.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff``, ``.h5``/``.hdf5``/``.hdf``/``.nxs``, ``.npy``, ``.npz``, ``.mrc``/``.rec``.
    data : array-like
        ``(n, n)`` or ``(n_slices, n, n)``: a NumPy array, or an array that is not in memory (a
        Zarr store, an HDF5 dataset), which is then read and written ``chunk`` slices at a time
        (TIFF, HDF5 and ``.npy``; ``.npz`` and MRC read it whole).
    metadata : dict
        Reconstruction parameters (method, angles, center, iterations, seed, ...); the version
        of napari-ganrec, ``kind`` and a time stamp are added.
    overwrite : bool
        Replace an existing file; otherwise a ``FileExistsError``.
    dataset : str
        HDF5 dataset (and ``.npz`` entry) name.
    chunk : int
        Slices per block for an array that is not in memory.
    attrs : dict, optional
        Further HDF5 dataset attributes.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    FileExistsError, PermissionError, OSError, ValueError
        Existing target, read-only folder, write failure (e.g. a full disk: then nothing is left
        at the target), bad data or suffix. Each names the path.
    """
    if _is_lazy(data):
        arr = SliceBlocks(data, np.float32, chunk, path) if len(data.shape) == 3 else np.asarray(data)
    else:
        arr = np.asarray(data)
    if not isinstance(arr, SliceBlocks):
        arr = arr.astype(np.float32, copy=False)
    return _write(path, arr, _full_metadata(metadata, "reconstruction"), overwrite, dataset, attrs=attrs)


def write_labels(path, labels, metadata: dict | None = None, overwrite: bool = False, *,
                 sidecar: bool = True) -> Path:
    """Write integer labels (e.g. pores) or a mask (bool), losslessly compressed for TIFF; see
    :func:`write_volume`. They are stored as the smallest unsigned type that holds them.

    ``sidecar=False`` leaves out the ``path.json`` side-car of TIFF, ``.npy`` and MRC files (TIFF
    keeps the metadata in the file)."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"cannot write {path}: labels must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"cannot write {path}: labels must be >= 0")
    top = int(arr.max(initial=0))
    arr = arr.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32)
    return _write(path, arr, _full_metadata(metadata, "labels"), overwrite, "labels",
                  compression="zlib", sidecar=sidecar)


def read_volume(path):
    """Read a volume written by :func:`write_volume` / :func:`write_labels` (or any single
    array in these formats): ``(numpy.ndarray, metadata dict)``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if suffix in (".tif", ".tiff"):
        from .tiff import read_tiff_volume

        return read_tiff_volume(path)
    if suffix in HDF5_SUFFIXES:
        from .hdf5 import read_hdf5_volume

        return read_hdf5_volume(path)
    if suffix in (".npy", ".npz"):
        from .numpy_io import read_numpy_volume

        return read_numpy_volume(path)
    from .mrc import MRC_SUFFIXES, read_mrc_volume

    if suffix in MRC_SUFFIXES:
        return read_mrc_volume(path)
    raise TomoFormatError(path, f"unknown volume type {suffix!r}")
