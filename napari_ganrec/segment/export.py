"""Saving segmentation results: the pore table as CSV and label or mask volumes as TIFF, both written
through :mod:`napari_ganrec.io` (atomic, the user's umask, never overwriting unless asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import write_labels
from ..io._common import atomic_write
from .table import _voxel_size

__all__ = ["save_table_csv", "save_labels_tiff"]


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def save_table_csv(table: dict[str, np.ndarray], path, *, overwrite: bool = False) -> Path:
    """Write the pore table as CSV (header row; atomic; refuses to overwrite unless asked).

    Raises
    ------
    FileExistsError, FileNotFoundError, PermissionError
        The file exists (without ``overwrite``), its folder is missing or read-only.
    """
    cols = list(table)
    n = len(next(iter(table.values()))) if cols else 0

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(cols) + "\n")
            for r in range(n):
                fh.write(",".join(_fmt(table[c][r]) for c in cols) + "\n")

    return atomic_write(path, write, overwrite=overwrite)


def save_labels_tiff(labels: np.ndarray, path, *, overwrite: bool = False, voxel_size=None) -> Path:
    """Write a label (or mask) volume as a TIFF with :func:`napari_ganrec.io.write_labels` (atomic,
    zlib-compressed, the smallest unsigned type that holds the labels, metadata in the file;
    refuses to overwrite unless asked).

    Raises
    ------
    ValueError
        ``path`` is not a ``.tif``/``.tiff`` file, or the labels are not non-negative integers.
    FileExistsError, FileNotFoundError, PermissionError
        As :func:`napari_ganrec.io.write_labels`.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"cannot write {path}: labels are saved as TIFF (.tif or .tiff)")
    data = np.asarray(labels)
    metadata: dict = {"axes": "ZYX"} if data.ndim == 3 else {}
    if voxel_size is not None:
        metadata["voxel_size_zyx"] = list(_voxel_size(voxel_size))
    return write_labels(path, data, metadata, overwrite=overwrite, sidecar=False)
