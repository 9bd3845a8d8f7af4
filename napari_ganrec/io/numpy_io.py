"""NumPy ``.npy`` (memory-mapped) and ``.npz`` projection stacks and volumes.

``.npy``: one array, ``(n_angles, n_rows, n_det)`` or one sinogram ``(n_angles, n_det)``; angles
from the argument or a side-car (``name.tlt``, ``name.angles.txt``, ... or the ``angles`` entry of
``name.npy.json``).

``.npz``: arrays ``projections`` (or ``data``, ``proj``, ``volume``, ``labels``; or the only
array), ``angles`` (or ``theta``; degrees), optional ``flats`` (``data_white``), ``darks``
(``data_dark``) and ``metadata`` (a JSON string).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ._common import (
    TomoFormatError,
    check_dtype,
    check_finite_sample,
    existing_file,
    read_json_sidecar,
    resolve_angles,
    to_jsonable,
)
from ._tomodata import TomoData

__all__ = ["read_npy", "read_npz", "write_npy", "write_npz", "read_numpy_volume"]

_PROJ_KEYS = ("projections", "data", "proj", "volume", "labels")


def _as_stack(arr, path):
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise TomoFormatError(path, f"expected (n_angles, n_rows, n_det), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise TomoFormatError(path, f"the array is empty (shape {arr.shape})")
    if arr.shape[2] < 2:
        raise TomoFormatError(path, f"the detector is {arr.shape[2]} pixel(s) wide")
    check_dtype(arr.dtype, path, "the array values")
    return arr


def _load_npy(path):
    path = existing_file(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise TomoFormatError(path, f"not a readable .npy file (truncated?): {exc}") from None


def read_npy(path, angles=None, flats=None, darks=None) -> TomoData:
    """Read a ``.npy`` projection stack as a memory map."""
    arr = _as_stack(_load_npy(path), path)
    side = read_json_sidecar(path)
    found = side.get("angles")
    theta = resolve_angles(angles, path, arr.shape[0], found=found,
                           found_units="degrees" if found is not None else None)
    check_finite_sample(arr, path)
    meta = {**side, "source": str(path), "format": "npy"}
    return TomoData(arr, theta, flats, darks, meta)


def _open_npz(path):
    path = existing_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise TomoFormatError(path, f"not a readable .npz file (truncated?): {exc}") from None


def _npz_get(z, path, key):
    try:
        return z[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise TomoFormatError(path, f"array {key!r} cannot be read (truncated?): {exc}") from None


def _npz_meta(z, path) -> dict:
    if "metadata" not in z.files:
        return {}
    raw = _npz_get(z, path, "metadata")
    try:
        return json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise TomoFormatError(path, f"the metadata entry is not JSON: {exc}") from None


def read_npz(path, angles=None, flats=None, darks=None) -> TomoData:
    """Read an ``.npz`` archive (see the module docstring for the keys)."""
    with _open_npz(path) as z:
        files = list(z.files)
        key = next((k for k in _PROJ_KEYS if k in files), None)
        arrays = [k for k in files if k != "metadata"]
        if key is None and len(arrays) == 1:
            key = arrays[0]
        if key is None:
            raise TomoFormatError(
                path, f"no projection array: expected one of {', '.join(_PROJ_KEYS)}; "
                f"found {', '.join(files) or 'nothing'}"
            )
        proj = _as_stack(_npz_get(z, path, key), path)
        meta = _npz_meta(z, path)
        ak = next((k for k in ("angles", "theta") if k in files), None)
        found = _npz_get(z, path, ak) if ak else meta.get("angles")
        fk = next((k for k in ("flats", "data_white") if k in files), None)
        dk = next((k for k in ("darks", "data_dark") if k in files), None)
        if flats is None and fk:
            flats = _npz_get(z, path, fk)
        if darks is None and dk:
            darks = _npz_get(z, path, dk)
    theta = resolve_angles(angles, path, proj.shape[0], found=found,
                           found_units=meta.get("angle_units"))
    if not np.all(np.isfinite(proj)):
        raise TomoFormatError(path, f"array {key!r} contains NaN or infinite values")
    meta = {**meta, "source": str(path), "format": "npz"}
    return TomoData(proj, theta, flats, darks, meta)


def write_npy(tmp_path, data, metadata: dict) -> None:
    """Write one array (the caller writes the JSON side-car)."""
    with open(tmp_path, "wb") as fh:
        np.save(fh, np.asarray(data), allow_pickle=False)


def write_npz(tmp_path, data, metadata: dict, name: str = "volume") -> None:
    """Write the array under ``name`` and the metadata as a JSON string under ``metadata``."""
    meta = json.dumps(to_jsonable(metadata), sort_keys=True)
    with open(tmp_path, "wb") as fh:
        np.savez_compressed(fh, **{name: np.asarray(data)}, metadata=np.array(meta))


def read_numpy_volume(path):
    """``(array, metadata)`` from ``.npy`` (+ side-car) or ``.npz``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return np.array(_load_npy(path)), read_json_sidecar(path)
    with _open_npz(path) as z:
        meta = _npz_meta(z, path)
        key = next((k for k in _PROJ_KEYS if k in z.files), None)
        if key is None:
            raise TomoFormatError(path, f"no volume array; found {', '.join(z.files)}")
        return _npz_get(z, path, key), meta
