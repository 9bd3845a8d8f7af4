"""MRC / REC tilt series (electron tomography), read with ``mrcfile`` as a memory map.

Layout: an image stack ``(nz, ny, nx)``, one tilt per section. The tilt axis runs along Y (IMOD
convention: rows along the axis) unless ``tilt_axis="x"`` is given or detected (``"auto"``: see
:func:`detect_tilt_axis`); an X axis is turned into rows by transposing each image, and
``metadata["tilt_axis"]`` / ``metadata["tilt_axis_source"]`` say which was used.

Angles, in this order: the ``angles`` argument; a side-car next to the file (``name.rawtlt``,
``name.tlt``, ...: one angle in degrees per line, IMOD); the FEI extended header: ``exttyp``
FEI1/FEI2 (field ``Alpha tilt``), or the old FEI/Agard header that older FEI/Thermo software
(Xplore3D, TIA) writes with an empty ``exttyp``: 128 bytes per section (usually 1024 sections), 32
float32 of which the first is the alpha tilt (degrees), the 11th the tilt-axis angle (degrees) and
the 12th the pixel size (metres).

Values: an MRC tilt series holds image intensities, used as projections as they are (no flats, no
``-log``; :func:`napari_ganrec.io.resolve_kind`). Signed 16-bit data that FEI software stores with
an offset of -32768 are such intensities too (already normalised or processed), never raw counts;
``metadata["int16_offset"]`` says when the values look like that. Files without the ``MAP `` id
string (older FEI software) are read permissively, with a warning. The pixel size goes to
``metadata["pixel_size"]`` (with ``metadata["pixel_size_unit"]``: ``"angstrom"``), the voxel size
(Angstrom, z, y, x) to ``metadata["voxel_size"]``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._common import (
    LazyStack,
    TomoFormatError,
    check_dtype,
    check_finite_sample,
    existing_file,
    resolve_angles,
    to_jsonable,
)
from ._tomodata import TomoData

__all__ = ["read_mrc", "fei_tilt_angles", "old_fei_header", "detect_tilt_axis", "write_mrc",
           "read_mrc_volume", "MRC_SUFFIXES", "TILT_AXES"]

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".ali", ".mrcs", ".preali")
TILT_AXES = ("auto", "y", "x")
OLD_FEI_RECORD = 128  # bytes per section of the old FEI / Agard extended header


def _open(path):
    import mrcfile

    path = existing_file(path)
    try:
        return mrcfile.mmap(path, mode="r")
    except ValueError as exc:
        strict_error = exc
    except (OSError, EOFError) as exc:
        raise TomoFormatError(path, f"not a readable MRC file (truncated or corrupt?): {exc}") from None
    # older FEI/Thermo software writes no 'MAP ' id string: read permissively, and say so
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as exc:
            raise TomoFormatError(path, f"not a readable MRC file (truncated or corrupt?): {exc}") from None
    if mrc.data is None:
        mrc.close()
        raise TomoFormatError(path, f"not a readable MRC file (truncated or corrupt?): {strict_error}")
    problems = "; ".join(sorted({str(w.message) for w in caught})) or str(strict_error)
    warnings.warn(f"{path}: the MRC header is not standard ({problems}); read permissively, as older "
                  "FEI/Thermo software writes it: check the result", UserWarning, stacklevel=3)
    return mrc


def fei_tilt_angles(mrc) -> np.ndarray | None:
    """Per-section ``Alpha tilt`` (degrees) from an FEI1/FEI2 extended header, or from the old FEI
    header (empty ``exttyp``, 128 bytes per section), or None."""
    exttyp = bytes(mrc.header.exttyp).strip(b"\x00 ")
    if exttyp in (b"FEI1", b"FEI2"):
        try:
            ext = mrc.indexed_extended_header
        except (ValueError, AttributeError):
            return None
        if ext is None or len(ext) == 0 or "Alpha tilt" not in ext.dtype.names:
            return None
        return np.asarray(ext["Alpha tilt"], dtype=np.float64)
    old = old_fei_header(mrc)
    return None if old is None else old["alpha_tilt"]


def old_fei_header(mrc) -> dict | None:
    """The old FEI / Agard extended header (``exttyp`` empty): ``alpha_tilt`` (degrees),
    ``tilt_axis`` (degrees) and ``pixel_size`` (metres) per section, or None when the file has none.

    Recognised when ``exttyp`` is empty, the extended header holds at least one 128-byte record per
    section, and the alpha tilts are finite and within +-90 degrees.
    """
    exttyp = bytes(mrc.header.exttyp).strip(b"\x00 ")
    if exttyp:
        return None
    ext = np.asarray(mrc.extended_header).view(np.uint8).ravel()
    nz = int(mrc.header.nz)
    if ext.size < OLD_FEI_RECORD * max(nz, 1) or ext.size % OLD_FEI_RECORD:
        return None
    order = mrc.header.mode.dtype.byteorder
    if order in ("=", "|"):
        order = "<" if np.little_endian else ">"
    rec = np.frombuffer(ext.tobytes(), dtype=order + "f4").reshape(-1, OLD_FEI_RECORD // 4)[:nz]
    alpha = rec[:, 0].astype(np.float64)
    if not np.all(np.isfinite(alpha)) or np.max(np.abs(alpha)) > 90 or np.ptp(alpha) == 0:
        return None
    return {"alpha_tilt": alpha, "tilt_axis": rec[:, 10].astype(np.float64),
            "pixel_size": rec[:, 11].astype(np.float64)}


def detect_tilt_axis(stack, max_frames: int = 5, margin: float = 3.0) -> tuple[str | None, float]:
    """Which image axis the tilt axis runs along, from the data: ``("y" | "x" | None, ratio)``.

    Summed over the image axis across the tilt axis, a projection keeps its profile along the
    tilt axis at every tilt (the same slab of the sample projects onto the same row), while the
    profile across the axis moves with the tilt. So the axis whose profile varies least across the
    tilts (relative, mean-normalised) is the tilt axis; None when neither varies ``margin`` times
    less than the other, or when the images are smaller than 8 pixels either way or show fewer than
    3 tilts (then the caller decides).
    """
    n = stack.shape[0]
    if min(stack.shape[1:]) < 8:
        return None, 1.0
    picks = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    if picks.size < 3:
        return None, 1.0
    frames = np.stack([np.asarray(stack[int(i)], dtype=np.float64) for i in picks])

    def spread(profiles):
        # each profile relative to its own mean (the path length grows as 1/cos(tilt) in a slab),
        # then how much the profiles differ across the tilts, relative to their own contrast
        profiles = profiles / (np.abs(profiles.mean(axis=1, keepdims=True)) + 1e-30)
        contrast = float(np.std(profiles.mean(axis=0))) + 1e-30
        return float(np.sqrt(np.mean(np.var(profiles, axis=0)))) / contrast

    along_y = spread(frames.sum(axis=2))  # profile along y (rows): constant if the axis is y
    along_x = spread(frames.sum(axis=1))
    if along_x > margin * along_y:
        return "y", along_x / max(along_y, 1e-30)
    if along_y > margin * along_x:
        return "x", along_y / max(along_x, 1e-30)
    return None, along_x / max(along_y, 1e-30)


def _mrc_kind(path, mrc) -> dict:
    """What an MRC file holds: our side-car's ``kind``, a reconstruction (IMOD ``.rec`` volume), or
    by convention a tilt series whose intensities are used as projections as they are."""
    from ._common import read_json_sidecar

    side = read_json_sidecar(path)
    if side.get("kind"):
        return {"kind": side["kind"]}
    if str(path).lower().endswith(".rec") and mrc.is_volume():
        return {"kind": "reconstruction"}  # an IMOD .rec volume (space group of a volume)
    return {"format_kind": "line_integrals",
            "format_kind_reason": "an MRC tilt series (electron tomography): the image intensities are used as "
            "projections as they are, without flats or -log (IMOD convention)"}


def _tilt_axis(raw, tilt_axis, path) -> tuple[str, str]:
    if tilt_axis is None:
        tilt_axis = "auto"
    t = str(tilt_axis).strip().lower()
    if t not in TILT_AXES:
        raise ValueError(f"tilt_axis must be one of {', '.join(TILT_AXES)}, got {tilt_axis!r}")
    if t != "auto":
        return t, "argument"
    found, ratio = detect_tilt_axis(LazyStack(raw))
    if found is None:
        warnings.warn(f"{path}: the tilt axis could not be told from the data (profile ratio {ratio:.2f}); "
                      "taken along y (IMOD convention); pass tilt_axis='x' if it runs along x",
                      UserWarning, stacklevel=3)
        return "y", "default: along y (IMOD convention), the data did not tell"
    return found, f"detected from the data (profile ratio {ratio:.2f})"


def _pixel_size(mrc, axis: str, old: dict | None) -> float | None:
    vs = mrc.voxel_size
    value = float(vs.y if axis == "x" else vs.x)
    unset = value <= 0 or (value == 1.0 and float(mrc.header.cella.x) == float(mrc.header.mx))
    if not unset:
        return value
    if old is not None and np.isfinite(old["pixel_size"][0]) and 0 < old["pixel_size"][0] < 1e-3:
        return float(f"{float(old['pixel_size'][0]) * 1e10:.6g}")  # metres (float32) -> Angstrom
    return None


def read_mrc(path, angles=None, tilt_axis: str | None = "auto") -> TomoData:
    """Read an MRC/REC tilt series lazily; see the module docstring.

    Parameters
    ----------
    path : str or Path
    angles : array-like or path, optional
        Tilt angles (degrees); default: a side-car or the FEI extended header.
    tilt_axis : {"auto", "y", "x"}
        Image axis the tilt axis runs along; ``"auto"`` detects it (:func:`detect_tilt_axis`) and
        falls back to y (IMOD) with a warning when the data do not tell.

    Raises
    ------
    TomoFormatError
        No or non-2-D/3-D image data, complex values, images narrower than 2 pixels, no angles.
    """
    mrc = _open(path)
    try:
        data = mrc.data
        if data is None:
            raise TomoFormatError(path, "the file holds no image data")
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise TomoFormatError(path, f"expected an image stack, got data of shape {data.shape}")
        check_dtype(data.dtype, path)
        axis, axis_source = _tilt_axis(data, tilt_axis, path)
        if axis == "x":
            data = data.transpose(0, 2, 1)
            warnings.warn(f"{path}: the tilt axis runs along x ({axis_source}); each image is transposed so "
                          "that rows run along the axis", UserWarning, stacklevel=2)
        stack = LazyStack(data)
        if stack.shape[2] < 2:
            raise TomoFormatError(path, f"the images are {stack.shape[2]} pixel(s) across the tilt axis; at "
                                  "least 2 are needed")
        n = stack.shape[0]
        fei = None
        try:
            fei = fei_tilt_angles(mrc)
        except Exception:  # noqa: BLE001 - a broken optional header must not stop reading
            fei = None
        try:
            old = old_fei_header(mrc)
        except Exception:  # noqa: BLE001
            old = None
        from ._common import find_angle_sidecar

        if angles is None and find_angle_sidecar(path) is None and fei is not None:
            theta = resolve_angles(None, path, n, found=fei[:n] if fei.size >= n else fei,
                                   found_units="degrees")
            source = "fei_extended_header" if old is None else "old_fei_extended_header"
        else:
            theta = resolve_angles(angles, path, n)
            source = "argument" if angles is not None else "sidecar"
        check_finite_sample(stack, path)
        vs = mrc.voxel_size
        meta = {
            "source": str(path), "format": "mrc", "angle_source": source, **_mrc_kind(path, mrc),
            "voxel_size": [float(vs.z), float(vs.y), float(vs.x)],
            "tilt_axis": axis, "tilt_axis_source": axis_source,
            "dtype": str(data.dtype),
        }
        px = _pixel_size(mrc, axis, old)
        if px is not None:
            meta["pixel_size"] = px
            meta["pixel_size_unit"] = "angstrom"
        if data.dtype == np.int16:
            lo = min(int(np.asarray(stack[i]).min()) for i in sorted({0, n // 2, n - 1}))
            if lo < -16384:
                meta["int16_offset"] = -32768
                meta["format_kind_reason"] = (meta.get("format_kind_reason", "") + "; signed 16-bit values down to "
                                       f"{lo}: intensities stored with an offset of -32768 (FEI), not raw "
                                       "counts: used as they are, never -log'd")
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
