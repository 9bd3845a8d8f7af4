"""TIFF projection stacks (one multi-page file or a folder of single-page files) and TIFF writers.

Reading: the pages (or the files, sorted naturally: ``p2.tif`` before ``p10.tif``) are the
projections, each ``(n_rows, n_det)`` with the rotation axis vertical. Pages are read one at a time
on demand. Angles: the ``angles`` argument (array or text file), the ``angles`` entry of the
napari-ganrec JSON metadata in the TIFF description or side-car, or a side-car text file (see
:func:`~napari_ganrec.io._common.find_angle_sidecar`). Flats and darks can be passed to
:func:`~napari_ganrec.io.read_tomo` as arrays or files.

Writing: float32 multi-page TIFF (one page per slice), the metadata as JSON in the
ImageDescription of the first page (tifffile "shaped" description) and in ``name.tif.json``.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from pathlib import Path

import numpy as np

from ._common import (
    LazyStack,
    TomoFormatError,
    check_dtype,
    check_finite_sample,
    existing_file,
    read_json_sidecar,
    resolve_angles,
    to_jsonable,
)
from ._tomodata import TomoData

__all__ = ["read_tiff", "read_tiff_folder", "write_tiff", "read_tiff_volume", "TIFF_SUFFIXES"]

TIFF_SUFFIXES = (".tif", ".tiff")


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _open_tiff(path):
    import tifffile

    path = existing_file(path)
    try:
        return tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
        raise TomoFormatError(
            path, f"not a readable TIFF file (truncated or corrupt?): {exc}"
        ) from None


def _embedded_metadata(tif) -> dict:
    try:
        meta = tif.shaped_metadata
        if meta:
            return dict(meta[0])
    except Exception:  # noqa: BLE001
        pass
    desc = tif.pages[0].description if len(tif.pages) else ""
    if desc.startswith("{"):
        try:
            return json.loads(desc)
        except json.JSONDecodeError:
            return {}
    return {}


def _declared_shape(meta: dict, tif) -> tuple[int, ...] | None:
    """The stack shape the file's own description declares (tifffile "shaped" or ImageJ), or None."""
    shape = meta.get("shape")
    if isinstance(shape, (list, tuple)) and all(isinstance(v, int) for v in shape):
        return tuple(int(v) for v in shape)
    try:
        ij = tif.imagej_metadata
    except Exception:  # noqa: BLE001
        ij = None
    if ij and int(ij.get("images", 0)) > 1 and len(tif.pages):
        return (int(ij["images"]),) + tuple(tif.pages[0].shape)
    return None


def _page_reader(tif, path):
    lock = threading.Lock()

    def frame(i: int) -> np.ndarray:
        with lock:
            try:
                return tif.pages[i].asarray()
            except Exception as exc:  # noqa: BLE001
                raise TomoFormatError(
                    path, f"page {i} cannot be read (truncated?): {exc}"
                ) from None

    return frame


def _tiff_stack(path):
    """``(LazyStack, metadata, TiffFile)`` for a multi-page TIFF."""
    tif = _open_tiff(path)
    try:
        pages = tif.pages
        n = len(pages)
        if n == 0:
            raise TomoFormatError(path, "the TIFF holds no pages")
        first = pages[0]
        shape = tuple(first.shape)
        check_dtype(first.dtype, path)
        if int(getattr(first, "samplesperpixel", 1)) > 1:
            raise TomoFormatError(path, f"the pages are colour images ({first.samplesperpixel} samples per pixel, "
                                  f"shape {shape}), not grey projections; convert them to one channel first")
        meta = _embedded_metadata(tif)
        declared = _declared_shape(meta, tif)
        if declared is not None and len(declared) == 3:
            if n == 1 and len(shape) == 2 and int(np.prod(declared)) == int(np.prod(shape)) and declared[0] > 1:
                # tifffile stores (n, rows, 1) as one page of n x rows samples: a 1-pixel detector
                if declared[2] < 2:
                    raise TomoFormatError(path, f"the stack is {tuple(declared)} (angles, rows, detector): the "
                                          f"detector is {declared[2]} pixel(s) wide; at least 2 are needed (are "
                                          "the axes (angles, rows, columns)?)")
            elif tuple(declared[1:]) == shape and n < declared[0]:
                raise TomoFormatError(path, f"the file is truncated: its description says {declared[0]} pages "
                                      f"of {shape}, but only {n} can be read")
        if n == 1 and len(shape) == 3:  # one page holding a 3-D array
            stack = np.asarray(first.asarray())
            return LazyStack(stack), meta, tif
        if len(shape) != 2:
            raise TomoFormatError(path, f"pages must be 2-D grey images, got shape {shape}")
        stack = LazyStack(_page_reader(tif, path), shape=(n,) + shape, dtype=first.dtype)
        return stack, meta, tif
    except BaseException:
        tif.close()
        raise


def read_tiff(path, angles=None, flats=None, darks=None) -> TomoData:
    """Read a multi-page TIFF projection stack lazily (page by page)."""
    path = Path(path)
    stack, meta, tif = _tiff_stack(path)
    try:
        if stack.shape[2] < 2:
            raise TomoFormatError(path, f"the images are {stack.shape[2]} pixel(s) wide")
        side = read_json_sidecar(path)
        found = meta.get("angles", side.get("angles"))
        theta = resolve_angles(angles, path, stack.shape[0], found=found,
                               found_units="degrees" if found is not None else None)
        check_finite_sample(stack, path)
        md = {**side, **{k: v for k, v in meta.items() if k != "shape"}, "source": str(path), "format": "tiff"}
        out = TomoData(stack, theta, flats, darks, md)
        out._closers.append(tif.close)
        return out
    except BaseException:
        tif.close()
        raise


def _scan_folder(files: list[Path]) -> tuple[tuple[int, ...], np.dtype]:
    """The common frame shape and dtype of a folder of TIFF files (headers only).

    Files of mixed dtypes are read in the type that holds all of them (e.g. uint8 and uint16 as
    uint16), with a warning; never cast to the first file's type.
    """
    infos = []
    for f in files:
        tif = _open_tiff(f)
        try:
            if not len(tif.pages):
                raise TomoFormatError(f, "the TIFF holds no pages")
            page = tif.pages[0]
            infos.append((tuple(page.shape), np.dtype(page.dtype)))
        finally:
            tif.close()
    shape, _ = infos[0]
    for f, (sh, dt) in zip(files, infos):
        check_dtype(dt, f)
        if sh != shape:
            raise TomoFormatError(f, f"image of shape {sh}, but {files[0].name} is {shape}; all the files of "
                                  "a folder must be frames of one detector")
    dtypes = sorted({dt for _, dt in infos}, key=str)
    dtype = np.result_type(*dtypes)
    if len(dtypes) > 1:
        counts = {str(dt): sum(1 for _, d in infos if d == dt) for dt in dtypes}
        mixed = ", ".join(f"{n} {t}" for t, n in counts.items())
        warnings.warn(f"{files[0].parent}: the files have mixed types ({mixed}); all are read as {dtype}, "
                      "which holds each exactly", UserWarning, stacklevel=3)
    return shape, dtype


def read_tiff_folder(path, angles=None, flats=None, darks=None) -> TomoData:
    """Read a folder of single-page TIFF files (natural sort order) lazily, one file per frame."""
    import tifffile

    folder = Path(path)
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES
                    and not p.name.startswith(".")), key=_natural_key)
    if not files:
        raise TomoFormatError(folder, "the folder holds no .tif/.tiff files")
    shape, dtype = _scan_folder(files)
    if len(shape) != 2:
        raise TomoFormatError(files[0], f"each file must hold one 2-D image, got shape {shape}")
    if shape[1] < 2:
        raise TomoFormatError(files[0], f"the images are {shape[1]} pixel(s) wide")

    def frame(i: int) -> np.ndarray:
        f = files[i]
        if f.stat().st_size == 0:
            raise TomoFormatError(f, "the file is empty (0 bytes)")
        try:
            img = tifffile.imread(f)
        except Exception as exc:  # noqa: BLE001
            raise TomoFormatError(f, f"cannot be read (truncated or corrupt?): {exc}") from None
        if img.shape != shape:
            raise TomoFormatError(f, f"image of shape {img.shape}, but {files[0].name} is {shape}")
        return img.astype(dtype, copy=False)

    stack = LazyStack(frame, shape=(len(files),) + shape, dtype=dtype)
    theta = resolve_angles(angles, folder, len(files))
    check_finite_sample(stack, folder)
    meta = {"source": str(folder), "format": "tiff-folder",
            "files": [f.name for f in files[:3]] + (["..."] if len(files) > 3 else [])}
    return TomoData(stack, theta, flats, darks, meta)


def write_tiff(tmp_path, data, metadata: dict, compression: str | None = None) -> None:
    """Write ``data`` (2-D or 3-D) as a (multi-page) TIFF with the metadata as JSON.

    Float data is stored as float32; integer labels keep their (unsigned) integer type.
    """
    import tifffile

    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    tifffile.imwrite(
        tmp_path, arr, metadata=to_jsonable(metadata), compression=compression,
        photometric="minisblack", software="napari-ganrec",
    )


def read_tiff_volume(path):
    """A TIFF volume with its metadata (embedded JSON, completed by the side-car)."""
    import tifffile

    tif = _open_tiff(path)
    try:
        try:
            arr = tif.asarray()
        except Exception as exc:  # noqa: BLE001
            raise TomoFormatError(path, f"cannot read the image data (truncated?): {exc}") from None
        meta = _embedded_metadata(tif)
    finally:
        tif.close()
    side = read_json_sidecar(path)
    meta = {**side, **{k: v for k, v in meta.items() if k != "shape"}}
    del tifffile
    return arr, meta
