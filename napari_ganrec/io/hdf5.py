"""HDF5 readers (DXchange, NeXus NXtomo) and the HDF5 volume writer.

DXchange (APS): ``/exchange/data`` (projections, ``theta:y:x``), optional ``/exchange/data_white``
(flats), ``/exchange/data_dark`` (darks), ``/exchange/theta`` (angles; ``units`` attribute
``degrees`` or ``rad``, degrees assumed when absent).

NeXus NXtomo (ESRF, Diamond): an ``NXentry`` (at any depth, e.g. ``/entry``, ``/entry0000``,
``/entry1/tomo_entry``) holding the frames in ``instrument/detector/data`` (or ``data/data``),
``image_key`` (0 projection, 1 flat, 2 dark, 3 invalid) beside them (``image_key_control`` with -1
for alignment frames is preferred when present) and ``sample/rotation_angle`` (or
``data/rotation_angle``; ``units`` ``degree``/``rad``).

Volumes written by napari-ganrec: dataset ``/volume`` (or ``/labels``) with the metadata as JSON
in the attribute ``napari_ganrec_metadata``.
"""

from __future__ import annotations

import json

import numpy as np

from ._common import (
    LazyStack,
    TomoFormatError,
    check_angles,
    check_dtype,
    check_finite_sample,
    existing_file,
    resolve_angles,
    to_jsonable,
)
from ._tomodata import TomoData

__all__ = ["open_hdf5", "read_dxchange", "read_nxtomo", "find_nxtomo_entry", "write_hdf5",
           "read_hdf5_volume", "hdf5_kind"]

VOLUME_ATTR = "napari_ganrec_metadata"


def open_hdf5(path):
    """Open an HDF5 file read-only, with a clear error for empty, truncated or foreign files."""
    import h5py

    path = existing_file(path)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise TomoFormatError(
            path, f"not a readable HDF5 file (truncated or not HDF5?): {exc}"
        ) from None


def _attr_str(obj, name: str, default: str | None = None) -> str | None:
    v = obj.attrs.get(name, default)
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.ravel()[0]
        return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
    return None if v is None else str(v)


def _scalar_str(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.ravel()[0] if v.size else b""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _dataset(obj, path, what: str):
    """``obj`` if it is an HDF5 dataset, else a clear error (a group where data was expected)."""
    import h5py

    if not isinstance(obj, h5py.Dataset):
        kind = "a group" if isinstance(obj, h5py.Group) else type(obj).__name__
        inside = f" holding {', '.join(list(obj.keys())[:8]) or 'nothing'}" if isinstance(obj, h5py.Group) else ""
        raise TomoFormatError(path, f"{what} is {kind}{inside}, not a dataset of images; point at the dataset "
                              "itself or rewrite the file in the DXchange layout")
    return obj


def _frames(ds, path, what: str):
    ds = _dataset(ds, path, what)
    check_dtype(ds.dtype, path, what)
    if ds.ndim == 2:  # a single sinogram: one detector row
        return LazyStack(_RowView(ds)), True
    if ds.ndim != 3:
        raise TomoFormatError(path, f"{what} must be 3-D (frames, rows, columns), got {ds.shape}")
    return LazyStack(ds), False


class _RowView:
    """A 2-D dataset ``(n, n_det)`` seen as ``(n, 1, n_det)``."""

    def __init__(self, ds):
        self._ds = ds
        self.shape = (ds.shape[0], 1, ds.shape[1])
        self.dtype = ds.dtype

    def __getitem__(self, key):
        a, rows, cols = key
        block = np.asarray(self._ds[a, cols])[:, None, :]
        return block[:, rows, :]


def _field_frames(ds, proj, single: bool, path, what: str):
    """Flats or darks: a stack of frames, or one (averaged) 2-D frame of the projections' shape."""
    ds = _dataset(ds, path, what)
    if ds.ndim == 2 and not single and tuple(ds.shape) == tuple(proj.shape[1:]):
        check_dtype(ds.dtype, path, what)
        return np.asarray(ds[()])[None]
    return _frames(ds, path, what)[0]


def _check_frames(proj, field, path, name):
    if field is not None and tuple(field.shape[1:]) != tuple(proj.shape[1:]):
        raise TomoFormatError(
            path,
            f"{name} have frames of shape {tuple(field.shape[1:])} but the projections have "
            f"{tuple(proj.shape[1:])}",
        )


def _check_detector(proj, path):
    if proj.shape[0] == 0:
        raise TomoFormatError(path, "the file holds no projections")
    if proj.shape[2] < 2:
        raise TomoFormatError(
            path,
            f"the detector is {proj.shape[2]} pixel(s) wide; at least 2 are needed "
            "(are the axes (angles, rows, columns)?)",
        )


def hdf5_kind(f) -> str:
    """``"dxchange"``, ``"nxtomo"``, ``"volume"`` or ``"unknown"`` for an open HDF5 file."""
    if "exchange/data" in f:
        return "dxchange"
    for name in ("volume", "labels"):
        if name in f and VOLUME_ATTR in f[name].attrs:
            return "volume"
    if find_nxtomo_entry(f) is not None:
        return "nxtomo"
    return "unknown"


def _describe(f) -> str:
    names: list[str] = []
    f.visit(lambda n: names.append(n) if len(names) < 12 else None)
    return ", ".join("/" + n for n in names) or "nothing"


def read_dxchange(path, angles=None, *, _file=None) -> TomoData:
    """Read an APS DXchange file; see the module docstring for the layout.

    Raises
    ------
    TomoFormatError
        Missing ``/exchange/data``, no angles, angle count mismatch, flats/darks of another
        shape, non-finite projections, detector narrower than 2 pixels.
    """
    f = _file if _file is not None else open_hdf5(path)
    try:
        if "exchange/data" not in f:
            raise TomoFormatError(
                path, f"no /exchange/data dataset (not DXchange); the file holds {_describe(f)}"
            )
        proj, single = _frames(f["exchange/data"], path, "/exchange/data")
        _check_detector(proj, path)
        flats = darks = None
        if "exchange/data_white" in f:
            flats = _field_frames(f["exchange/data_white"], proj, single, path, "/exchange/data_white")
            _check_frames(proj, flats, path, "flats (/exchange/data_white)")
        if "exchange/data_dark" in f:
            darks = _field_frames(f["exchange/data_dark"], proj, single, path, "/exchange/data_dark")
            _check_frames(proj, darks, path, "darks (/exchange/data_dark)")
        if angles is not None:
            theta = resolve_angles(angles, path, proj.shape[0])
        elif "exchange/theta" in f:
            ds = _dataset(f["exchange/theta"], path, "/exchange/theta")
            theta = check_angles(ds[()], proj.shape[0], path, units=_attr_str(ds, "units"))
        else:
            raise TomoFormatError(path, "no /exchange/theta; pass the angles (degrees)")
        check_finite_sample(proj, path)
        meta = {"source": str(path), "format": "dxchange",
                "dataset": "/exchange/data", "single_row": single}
        for key, name in (("title", "exchange/title"), ("sample", "measurement/sample/name")):
            if name in f:
                try:
                    meta[key] = _scalar_str(f[name])
                except (TypeError, ValueError, OSError):
                    pass
        desc = _attr_str(f["exchange/data"], "description")
        if desc:
            meta["description"] = desc
        data = TomoData(proj, theta, flats, darks, meta)
        data._closers.append(f.close)
        return data
    except BaseException:
        if _file is None:
            f.close()
        raise


# --------------------------------------------------------------------------- NeXus
def _nx_class(obj) -> str:
    return _attr_str(obj, "NX_class", "") or ""


def find_nxtomo_entry(f):
    """The NXtomo entry group of an open file (depth <= 3), or None."""
    import h5py

    candidates = []

    def visit(group, depth):
        for _name, obj in group.items():
            if not isinstance(obj, h5py.Group):
                continue
            is_entry = _nx_class(obj) in ("NXentry", "NXsubentry")
            definition = ""
            if "definition" in obj:
                try:
                    definition = _scalar_str(obj["definition"])
                except (TypeError, ValueError, OSError):
                    definition = ""
            has_key = any(k in obj for k in ("instrument/detector/image_key", "data/image_key"))
            if definition.lower() == "nxtomo" or (is_entry and has_key) or has_key:
                candidates.append((definition.lower() != "nxtomo", depth, obj))
            if depth < 3:
                visit(obj, depth + 1)

    visit(f, 0)
    if not candidates:
        return None
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[0][2]


def _first(group, names):
    for n in names:
        if n in group:
            return group[n], n
    return None, None


def read_nxtomo(path, angles=None, *, _file=None) -> TomoData:
    """Read a NeXus NXtomo file; see the module docstring for the layout."""
    f = _file if _file is not None else open_hdf5(path)
    try:
        entry = find_nxtomo_entry(f)
        if entry is None:
            raise TomoFormatError(
                path, f"no NXtomo entry (no image_key beside the detector data); the file holds "
                f"{_describe(f)}"
            )
        ds, dname = _first(entry, ("instrument/detector/data", "data/data"))
        if ds is None:
            raise TomoFormatError(path, f"NXtomo entry {entry.name} has no detector data")
        ds = _dataset(ds, path, f"{entry.name}/{dname}")
        check_dtype(ds.dtype, path, ds.name)
        keys_ds, kname = _first(entry, ("instrument/detector/image_key_control",
                                        "data/image_key_control",
                                        "instrument/detector/image_key", "data/image_key"))
        if keys_ds is None:
            raise TomoFormatError(
                path, f"NXtomo entry {entry.name} has no image_key (instrument/detector/image_key), so its "
                "frames cannot be told apart as projections (0), flats (1) and darks (2); add it, or export "
                "the projections with their flats and darks in another layout (e.g. DXchange)"
            )
        keys_ds = _dataset(keys_ds, path, f"{entry.name}/{kname}")
        try:
            keys = np.asarray(keys_ds[()]).astype(np.int64).ravel()
        except (TypeError, ValueError) as exc:
            raise TomoFormatError(path, f"{keys_ds.name} is not a list of integers: {exc}") from None
        if ds.ndim != 3:
            raise TomoFormatError(path, f"{ds.name} must be 3-D (frames, rows, columns)")
        if keys.size != ds.shape[0]:
            raise TomoFormatError(
                path, f"image_key has {keys.size} entries for {ds.shape[0]} frames in {ds.name}"
            )
        idx_p = np.nonzero(keys == 0)[0]
        idx_f = np.nonzero(keys == 1)[0]
        idx_d = np.nonzero(keys == 2)[0]
        proj = LazyStack(ds, index=idx_p)
        _check_detector(proj, path)
        flats = LazyStack(ds, index=idx_f) if idx_f.size else None
        darks = LazyStack(ds, index=idx_d) if idx_d.size else None
        if angles is not None:
            theta = resolve_angles(angles, path, idx_p.size)
        else:
            rot, _ = _first(entry, ("sample/rotation_angle", "data/rotation_angle"))
            if rot is None:
                raise TomoFormatError(path, f"NXtomo entry {entry.name} has no rotation_angle; "
                                      "pass the angles (degrees)")
            rot = _dataset(rot, path, f"{entry.name}/sample/rotation_angle")
            all_angles = np.asarray(rot[()], dtype=np.float64).ravel()
            if all_angles.size != keys.size:
                raise TomoFormatError(
                    path, f"{rot.name} has {all_angles.size} angles for {keys.size} frames"
                )
            units = _attr_str(rot, "units") or _attr_str(rot, "unit")
            theta = check_angles(all_angles[idx_p], idx_p.size, path, units=units)
        check_finite_sample(proj, path)
        meta = {"source": str(path), "format": "nxtomo", "format_kind": "raw",
                "format_kind_reason": "NXtomo image_key marks these frames as projections, flats and darks "
                "(raw detector counts)", "entry": entry.name,
                "dataset": ds.name, "n_flats": int(idx_f.size), "n_darks": int(idx_d.size)}
        data = TomoData(proj, theta, flats, darks, meta)
        data._closers.append(f.close)
        return data
    except BaseException:
        if _file is None:
            f.close()
        raise


# --------------------------------------------------------------------------- volumes
def write_hdf5(tmp_path, data, metadata: dict, name: str = "volume") -> None:
    """Write ``data`` to dataset ``/name`` with the metadata as JSON and as plain attributes."""
    import h5py

    with h5py.File(tmp_path, "w") as f:
        arr = np.asarray(data)
        chunks = (1,) + arr.shape[1:] if arr.ndim == 3 else None
        ds = f.create_dataset(name, data=arr, chunks=chunks)
        meta = to_jsonable(metadata)
        ds.attrs[VOLUME_ATTR] = json.dumps(meta, sort_keys=True)
        for k, v in meta.items():
            if isinstance(v, (int, float, str, bool)):
                ds.attrs[k] = v


def read_hdf5_volume(path):
    """Read a volume written by :func:`write_hdf5`: ``(array, metadata)``."""
    with open_hdf5(path) as f:
        for name in ("volume", "labels"):
            if name in f and VOLUME_ATTR in f[name].attrs:
                ds = f[name]
                try:
                    meta = json.loads(_attr_str(ds, VOLUME_ATTR))
                except json.JSONDecodeError as exc:
                    raise TomoFormatError(path, f"corrupt metadata attribute: {exc}") from None
                return ds[()], meta
        raise TomoFormatError(path, f"no napari-ganrec volume in it; the file holds {_describe(f)}")
