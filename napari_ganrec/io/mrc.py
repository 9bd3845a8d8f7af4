"""MRC / REC tilt series (electron tomography), read with ``mrcfile`` as a memory map.

Layout: an image stack ``(nz, ny, nx)``, one tilt per section, tilt axis along Y (IMOD convention,
so rows run along the axis). Angles, in this order: the ``angles`` argument; a side-car next to the
file (``name.rawtlt``, ``name.tlt``, ...: one angle in degrees per line, IMOD); the FEI extended
header (``exttyp`` FEI1/FEI2, field ``Alpha tilt`` per section, degrees). The voxel size (Angstrom)
goes to ``metadata["voxel_size"]``.
"""

from __future__ import annotations

import numpy as np

from ._common import LazyStack, TomoFormatError, check_finite_sample, existing_file, resolve_angles, to_jsonable
from ._tomodata import TomoData

__all__ = ["read_mrc", "fei_tilt_angles", "write_mrc", "read_mrc_volume", "MRC_SUFFIXES"]

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".ali", ".mrcs", ".preali")


def _open(path):
    import mrcfile

    path = existing_file(path)
    try:
        return mrcfile.mmap(path, mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise TomoFormatError(
            path, f"not a readable MRC file (truncated or corrupt?): {exc}"
        ) from None


def fei_tilt_angles(mrc) -> np.ndarray | None:
    """Per-section ``Alpha tilt`` (degrees) from an FEI1/FEI2 extended header, or None."""
    exttyp = bytes(mrc.header.exttyp).strip(b"\x00 ")
    if exttyp not in (b"FEI1", b"FEI2"):
        return None
    try:
        ext = mrc.indexed_extended_header
    except (ValueError, AttributeError):
        return None
    if ext is None or len(ext) == 0 or "Alpha tilt" not in ext.dtype.names:
        return None
    return np.asarray(ext["Alpha tilt"], dtype=np.float64)


def _mrc_kind(path, mrc) -> dict:
    """What an MRC file holds: our side-car's ``kind``, a reconstruction (IMOD ``.rec`` volume), or
    by convention a tilt series whose intensities are used as projections as they are."""
    from ._common import read_json_sidecar

    side = read_json_sidecar(path)
    if side.get("kind"):
        return {"kind": side["kind"], "kind_from": "metadata",
                "kind_reason": f"the side-car {path}.json says kind={side['kind']!r}"}
    if str(path).lower().endswith(".rec") and mrc.is_volume():
        return {"kind": "reconstruction", "kind_from": "metadata",
                "kind_reason": "an IMOD .rec volume (MRC space group of a volume)"}
    return {"kind": "line_integrals", "kind_from": "format",
            "kind_reason": "an MRC tilt series (electron tomography): the image intensities are used as "
            "projections as they are, without flats or -log (IMOD convention)"}


def read_mrc(path, angles=None) -> TomoData:
    """Read an MRC/REC tilt series lazily; see the module docstring."""
    mrc = _open(path)
    try:
        data = mrc.data
        if data is None:
            raise TomoFormatError(path, "the file holds no image data")
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise TomoFormatError(path, f"expected an image stack, got data of shape {data.shape}")
        stack = LazyStack(data)
        if stack.shape[2] < 2:
            raise TomoFormatError(path, f"the images are {stack.shape[2]} pixel(s) wide")
        n = stack.shape[0]
        fei = None
        try:
            fei = fei_tilt_angles(mrc)
        except Exception:  # noqa: BLE001 - a broken optional header must not stop reading
            fei = None
        from ._common import find_angle_sidecar

        if angles is None and find_angle_sidecar(path) is None and fei is not None:
            theta = resolve_angles(None, path, n, found=fei[:n] if fei.size >= n else fei,
                                   found_units="degrees")
            source = "fei_extended_header"
        else:
            theta = resolve_angles(angles, path, n)
            source = "argument" if angles is not None else "sidecar"
        check_finite_sample(stack, path)
        vs = mrc.voxel_size
        meta = {
            "source": str(path), "format": "mrc", "angle_source": source, **_mrc_kind(path, mrc),
            "voxel_size": [float(vs.z), float(vs.y), float(vs.x)],
        }
        out = TomoData(stack, theta, None, None, meta)
        out._closers.append(mrc.close)
        return out
    except BaseException:
        mrc.close()
        raise


def write_mrc(tmp_path, data, metadata: dict) -> None:
    """Write a float32 (or integer labels) volume as MRC; metadata in the labels (summary) and
    in the JSON side-car the caller writes."""
    import mrcfile

    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int16 if arr.max(initial=0) < 32768 else np.float32)
    with mrcfile.new(tmp_path, overwrite=True) as mrc:
        mrc.set_data(arr)
        meta = to_jsonable(metadata)
        label = f"napari-ganrec {meta.get('version', '')} {meta.get('method', '')}".strip()
        mrc.header.label[0] = label[:80].encode()
        mrc.header.nlabl = 1
        if "voxel_size" in meta:
            vs = meta["voxel_size"]
            mrc.voxel_size = tuple(vs[::-1]) if isinstance(vs, list) else vs


def read_mrc_volume(path):
    """A volume and its side-car metadata: ``(array, metadata)``."""
    from ._common import read_json_sidecar

    mrc = _open(path)
    try:
        arr = np.array(mrc.data)
    finally:
        mrc.close()
    return arr, read_json_sidecar(path)
