"""npe2 reader and writer hooks (thin glue over :mod:`napari_ganrec.io`).

The reader opens projection stacks lazily (a dask array, one chunk per projection) with the
angles, flats, darks and file metadata in ``layer.metadata``; volumes and labels written by
napari-ganrec open as image / labels layers with their parameters. The writers never replace an
existing file silently: with a Qt application running they ask, otherwise they refuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import READ_SUFFIXES, TomoFormatError, detect_format, read_tomo, read_volume

__all__ = ["get_reader", "read_layers", "write_image", "write_labels_layer"]

VOLUME_KINDS = ("reconstruction", "labels")


def _claims(path: str) -> bool:
    p = Path(path)
    if p.is_dir():
        return any(c.suffix.lower() in (".tif", ".tiff") for c in p.iterdir())
    return p.suffix.lower() in READ_SUFFIXES


def get_reader(path):
    """npe2 ``get_reader``: a reader function for paths this plugin understands, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = str(path)
    if not _claims(path):
        return None
    try:
        detect_format(path)
    except (TomoFormatError, OSError):
        return None
    return read_layers


def _volume_kind(path: Path, fmt: str) -> str | None:
    """``"reconstruction"``/``"labels"`` when ``path`` holds a napari-ganrec volume."""
    if fmt == "hdf5-volume":
        return "reconstruction"
    if fmt in ("tiff", "npy", "npz", "mrc"):
        from ._common import read_json_sidecar

        meta = read_json_sidecar(path)
        if fmt == "tiff" and not meta:
            from .tiff import _embedded_metadata, _open_tiff

            tif = _open_tiff(path)
            try:
                meta = _embedded_metadata(tif)
            finally:
                tif.close()
        if fmt == "npz" and not meta:
            from .numpy_io import _npz_meta, _open_npz

            with _open_npz(path) as z:
                meta = _npz_meta(z, path)
        kind = meta.get("kind")
        return kind if kind in VOLUME_KINDS else None
    return None


def read_layers(path) -> list[tuple[Any, dict, str]]:
    """Layer data tuples for ``path`` (see the module docstring)."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    path = Path(path)
    fmt = detect_format(path)
    kind = _volume_kind(path, fmt)
    if kind is not None:
        data, meta = read_volume(path)
        layer_type = "labels" if meta.get("kind") == "labels" else "image"
        return [(data, {"name": path.stem, "metadata": dict(meta)}, layer_type)]
    try:
        tomo = read_tomo(path, format=fmt)
    except TomoFormatError as exc:
        if "no projection angles" not in str(exc):
            raise
        data, meta = read_volume(path)  # a plain stack without angles: show it anyway
        return [(data, {"name": path.stem, "metadata": {**meta, "source": str(path),
                                                        "angles_deg": None}}, "image")]
    proj = tomo.projections
    data = proj.to_dask() if hasattr(proj, "to_dask") else np.asarray(proj)
    meta = dict(tomo.metadata)
    meta["angles_deg"] = np.asarray(tomo.angles)
    if tomo.flats is not None:
        meta["flats"] = np.asarray(tomo.flats[:], dtype=np.float32)
    if tomo.darks is not None:
        meta["darks"] = np.asarray(tomo.darks[:], dtype=np.float32)
    meta["axes"] = ("angle", "row", "detector")
    return [(data, {"name": f"{path.stem} projections", "metadata": meta}, "image")]


def _confirm_overwrite(path: Path) -> bool:
    """Ask the user (Qt) whether to replace ``path``; False without a running Qt app."""
    try:
        from .._qt._io_dialogs import ask_overwrite
    except ImportError:
        return False
    return ask_overwrite(path)


def _layer_metadata(meta: dict) -> dict:
    md = dict(meta.get("metadata") or {})
    for big in ("flats", "darks"):
        md.pop(big, None)
    md.setdefault("layer_name", meta.get("name"))
    return md


def _target(path: str) -> tuple[Path, bool]:
    p = Path(path)
    overwrite = False
    if p.exists():
        if not _confirm_overwrite(p):
            raise FileExistsError(f"{p} already exists; not replaced")
        overwrite = True
    return p, overwrite


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer image writer: float32 volume with its parameters."""
    from . import write_volume

    p, overwrite = _target(path)
    write_volume(p, np.asarray(data), _layer_metadata(meta), overwrite=overwrite)
    return [str(p)]


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer labels writer (compressed integer TIFF, HDF5, NumPy, MRC)."""
    from . import write_labels

    p, overwrite = _target(path)
    write_labels(p, np.asarray(data), _layer_metadata(meta), overwrite=overwrite)
    return [str(p)]
