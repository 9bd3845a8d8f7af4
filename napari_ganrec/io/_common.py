"""Shared pieces of the readers and writers: errors, lazy stacks, angle files, atomic writes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TomoFormatError",
    "LazyStack",
    "read_angle_file",
    "check_angles",
    "check_finite_sample",
    "check_dtype",
    "atomic_paths",
    "atomic_write",
    "atomic_write_bytes",
    "remove_stale_temps",
    "check_output_path",
    "to_jsonable",
    "sidecar_path",
    "SliceBlocks",
]


class TomoFormatError(ValueError):
    """A file that cannot be read as tomography data; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# --------------------------------------------------------------------------- lazy stacks
class LazyStack:
    """A read-only, lazily read 3-D array ``(n_frames, n_rows, n_cols)``.

    ``source`` is anything that can be indexed as ``source[i0:i1, rows, cols]`` (an ``h5py``
    dataset, a ``numpy.memmap``), or a callable ``frame(i) -> (n_rows, n_cols)`` array (one TIFF
    page). ``index`` picks (and orders) the source frames the stack shows, e.g. only the
    projections of a NeXus file. Indexing reads only what it needs: contiguous runs of frames,
    and for sliceable sources only the requested rows.
    """

    def __init__(self, source, shape: Sequence[int] | None = None, dtype=None, index=None):
        self._source = source
        self._callable = callable(source) and not hasattr(source, "shape")
        if self._callable:
            if shape is None or dtype is None:
                raise ValueError("a callable source needs shape and dtype")
            src_shape = tuple(int(s) for s in shape)
            self.dtype = np.dtype(dtype)
        else:
            src_shape = tuple(int(s) for s in source.shape)
            self.dtype = np.dtype(source.dtype if dtype is None else dtype)
        if len(src_shape) != 3:
            raise ValueError(f"a stack must be 3-D, got shape {src_shape}")
        self._index = (
            np.arange(src_shape[0]) if index is None else np.asarray(index, dtype=np.int64)
        )
        self.shape = (len(self._index),) + src_shape[1:]
        self.ndim = 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyStack(shape={self.shape}, dtype={self.dtype})"

    def _frames(self, key0) -> tuple[np.ndarray, bool]:
        if isinstance(key0, (int, np.integer)):
            k = int(key0)
            if k < -self.shape[0] or k >= self.shape[0]:
                raise IndexError(f"frame {k} out of range for {self.shape[0]} frames")
            return self._index[[k]], True
        return self._index[key0], False

    def _read(self, frames: np.ndarray, rows, cols) -> np.ndarray:
        out_parts = []
        if frames.size == 0:
            probe = np.empty(self.shape[1:], dtype=self.dtype)[rows, cols]
            return np.empty((0,) + probe.shape, dtype=self.dtype)
        # contiguous increasing runs are read with one slice each
        breaks = np.nonzero(np.diff(frames) != 1)[0] + 1
        for run in np.split(frames, breaks):
            a, b = int(run[0]), int(run[-1]) + 1
            if self._callable:
                part = np.stack([np.asarray(self._source(i))[rows, cols] for i in range(a, b)])
            else:
                part = np.asarray(self._source[a:b, rows, cols])
            out_parts.append(part)
        out = out_parts[0] if len(out_parts) == 1 else np.concatenate(out_parts)
        return out.astype(self.dtype, copy=False)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3:
            raise IndexError(f"too many indices for a 3-D stack: {key}")
        frames, squeeze = self._frames(key[0])
        rows, cols = key[1], key[2]
        simple = all(isinstance(k, (slice, int, np.integer)) for k in (rows, cols))
        if simple:
            out = self._read(frames, rows, cols)
        else:  # fancy row/column indices: read whole frames, index in memory
            out = self._read(frames, slice(None), slice(None))[:, rows, cols]
        return out[0] if squeeze else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def to_dask(self, frames_per_chunk: int = 1):
        """A dask array over this stack, one chunk per ``frames_per_chunk`` frames."""
        import dask.array as da

        return da.from_array(
            self, chunks=(frames_per_chunk,) + self.shape[1:], asarray=False, fancy=False,
            meta=np.empty((0, 0, 0), dtype=self.dtype),
        )


# --------------------------------------------------------------------------- angles
def read_angle_file(path) -> np.ndarray:
    """Read angles (degrees) from a text side-car: ``.rawtlt``/``.tlt`` (one per line) or any
    whitespace/comma separated list; ``#`` starts a comment.

    The one angle-file parser of the package (``widget_model.inputs.read_angles_file`` calls it).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    TomoFormatError
        When the file cannot be read, holds no angles, or holds something other than numbers
        (``problem`` names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"angle file {path} does not exist")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise TomoFormatError(path, f"cannot be read: {exc.strerror or exc}") from None
    values: list[float] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        for tok in line.split():
            try:
                values.append(float(tok))
            except ValueError:
                raise TomoFormatError(
                    path, f"line {lineno}: {tok!r} is not a number (an angle in degrees)"
                ) from None
    if not values:
        raise TomoFormatError(path, "holds no angles (it is empty, or only comments)")
    return np.asarray(values, dtype=np.float64)


def check_angles(angles, n_projections: int, path, units: str | None = None) -> np.ndarray:
    """Validate angles against the projection count; convert radians when ``units`` says so.

    Warns when angles without declared units look like radians.
    """
    try:
        a = np.asarray(angles, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise TomoFormatError(path, f"the angles are not numbers (degrees): {exc}") from None
    if a.size != n_projections:
        hint = (f" (if the file should hold {a.size} projections, it is truncated)"
                if a.size > n_projections else "")
        raise TomoFormatError(
            path,
            f"{a.size} angles for {n_projections} projections; give one angle per projection{hint}",
        )
    if not np.all(np.isfinite(a)):
        raise TomoFormatError(path, "the angles contain NaN or infinite values")
    if a.size > 1 and np.ptp(a) == 0:
        raise TomoFormatError(path, f"all {a.size} angles are equal ({a[0]:g}); give the angle of each "
                              "projection (degrees)")
    u = (units or "").strip().lower()
    if u in ("rad", "radian", "radians"):
        return np.rad2deg(a)
    if u in ("mrad", "milliradian", "milliradians"):
        return np.rad2deg(a * 1e-3)
    if not u and a.size > 2 and np.ptp(a) > 0 and np.max(np.abs(a)) <= 2 * np.pi + 1e-6:
        warnings.warn(
            f"{path}: the angles span {np.ptp(a):.3g} and never exceed 2*pi; they look like "
            "radians but degrees were expected (convert with numpy.rad2deg or pass angles=)",
            UserWarning,
            stacklevel=3,
        )
    return a


def check_dtype(dtype, path, what: str = "the projections") -> np.dtype:
    """Refuse what cannot be projections: complex values (the imaginary part would be dropped),
    booleans (a mask) and non-numeric data. The same rule for every format."""
    dt = np.dtype(dtype)
    if dt.kind == "c":
        raise TomoFormatError(
            path, f"{what} are complex ({dt}); the imaginary part would be lost. Projections are real: "
            "convert them first (numpy.abs for a magnitude, .real for the real part)"
        )
    if dt.kind == "b":
        raise TomoFormatError(
            path, f"{what} are boolean (a mask?), not projections; if 0/1 values are really meant, convert "
            "them to numbers first (e.g. numpy.float32)"
        )
    if dt.kind not in "iuf":
        raise TomoFormatError(path, f"{what} are not numeric (dtype {dt})")
    return dt


def check_finite_sample(arr, path, what: str = "projections", max_frames: int = 3) -> None:
    """Raise when a few sampled frames (first, middle, last) of ``arr`` contain NaN or inf.

    A cheap check that does not read a large file whole.
    """
    n = arr.shape[0]
    if n == 0:
        return
    picks = sorted({0, n // 2, n - 1})[:max_frames]
    for i in picks:
        frame = np.asarray(arr[i])
        if frame.dtype.kind == "f" and not np.all(np.isfinite(frame)):
            raise TomoFormatError(
                path, f"{what} frame {i} contains NaN or infinite values; the file is corrupt"
            )


# --------------------------------------------------------------------------- writing
def sidecar_path(path) -> Path:
    """The JSON side-car of an output file: ``name.ext.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def to_jsonable(obj: Any) -> Any:
    """Metadata to plain JSON types (arrays to lists, paths to strings, unknowns to repr)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.size > 100_000:
            return f"<array shape={obj.shape} dtype={obj.dtype}>"
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        if isinstance(obj, float) and not np.isfinite(obj):
            return None
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def existing_file(path) -> Path:
    """``path`` as a Path, or a clear error when it is missing or empty (0 bytes).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    TomoFormatError
        ``path`` is empty.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise TomoFormatError(path, "the file is empty (0 bytes)")
    return path


def check_output_path(path, overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: its folder exists and is writable, and it does not
    exist unless ``overwrite``.

    Raises
    ------
    FileExistsError, PermissionError, FileNotFoundError
        With a message naming the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {folder} is read-only")
    return path


# temporary files: ".NAME.tmp-HOST-PID-RANDOM.part" beside the target, so that a later run can tell
# those of a process that died (kill -9, power cut) from those of one still writing
_TMP_MARK = ".tmp-"
_TMP_SUFFIX = ".part"


def _host() -> str:
    return socket.gethostname().replace("-", "_").replace(".", "_") or "host"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}{_TMP_MARK}{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    return True


def remove_stale_temps(target) -> list[Path]:
    """Remove the temporary files that a killed writer of ``target`` left beside it.

    A temporary file ``.NAME.tmp-HOST-PID-RANDOM.part`` is stale when HOST is this machine and no
    process PID runs here any more; ``.NAME.tmp-PID`` is the name of earlier versions (same rule,
    this host assumed). Files of live processes or of other hosts (a shared file system) are kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}{_TMP_MARK}"
    removed: list[Path] = []
    try:
        candidates = [c for c in folder.iterdir() if c.name.startswith(prefix)]
    except OSError:
        return removed
    host = _host()
    for cand in candidates:
        rest = cand.name[len(prefix):]
        if rest.endswith(_TMP_SUFFIX):  # HOST-PID-RANDOM.part
            parts = rest[: -len(_TMP_SUFFIX)].split("-")
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            pid = int(parts[1])
        elif rest.isdigit():  # the older ".NAME.tmp-PID"
            pid = int(rest)
        else:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            if cand.is_dir():
                shutil.rmtree(cand)
            else:
                cand.unlink()
            removed.append(cand)
        except FileNotFoundError:
            pass
        except OSError as exc:
            warnings.warn(f"cannot remove the stale temporary file {cand}: {exc}", UserWarning, stacklevel=2)
    return removed


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (and restore it at once)
    os.umask(mask)
    return mask


def _give_user_mode(path: Path) -> None:
    """Temporary files are created 0600; the final file gets what ``open()`` would give: 0666 less
    the umask."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_paths(*paths, overwrite: bool = False) -> Iterator[list[Path]]:
    """Write files atomically: yields temporary paths beside the targets; on success they are
    renamed onto the targets (``os.replace``), on any error they are removed and the targets are
    left untouched.

    The written files get the user's umask (as a plain ``open()`` would give them). Temporary
    files that a killed earlier writer left beside a target are removed first
    (:func:`remove_stale_temps`).

    Raises
    ------
    FileExistsError
        A target exists and ``overwrite`` is false.
    PermissionError
        The folder is read-only.
    OSError
        Writing failed (e.g. the disk is full); the message names the target.
    """
    targets = [check_output_path(p, overwrite) for p in paths]
    temps: list[Path] = []
    try:
        for t in targets:
            remove_stale_temps(t)
            fd, name = tempfile.mkstemp(prefix=_temp_prefix(t), suffix=_TMP_SUFFIX, dir=t.parent)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for tmp in temps:
            if tmp.is_file():
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                _give_user_mode(tmp)
        for tmp, t in zip(temps, targets):
            os.replace(tmp, t)
    except PermissionError as exc:
        raise PermissionError(f"cannot write {targets[0]}: {exc.strerror or exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(
                errno.ENOSPC, f"cannot write {targets[0]}: no space left on device; "
                "nothing was written at the target"
            ) from exc
        raise
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def atomic_write(path, write: Callable[[Path], Any], *, overwrite: bool = False) -> Path:
    """Write one file atomically: ``write(tmp)`` fills a temporary file beside ``path``, which then
    replaces it (see :func:`atomic_paths`).

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_paths(path, overwrite=overwrite) as (tmp,):
        write(tmp)
    return Path(path)


def atomic_write_bytes(path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (bookkeeping files: replaced by default)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write, overwrite=overwrite)


class SliceBlocks:
    """A volume too large to hold at once (a Zarr store, an HDF5 dataset), written ``chunk`` slices
    at a time: ``for start, block in blocks`` gives NumPy blocks of ``dtype``, each checked for
    NaN/inf (float data) before it is written.

    Parameters
    ----------
    source : array-like
        Indexable as ``source[a:b]``, with ``shape`` (3-D) and ``dtype``.
    dtype : numpy dtype
        The type the blocks are written as.
    chunk : int
        Slices per block (memory is bounded by this, not by the volume).
    path : path
        The target, for messages.
    """

    def __init__(self, source, dtype, chunk: int, path):
        self.source = source
        self.shape = tuple(int(n) for n in source.shape)
        self.dtype = np.dtype(dtype)
        self.chunk = max(1, int(chunk))
        self.path = path
        self.ndim = len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.shape[0], self.chunk):
            block = np.asarray(self.source[start:start + self.chunk]).astype(self.dtype, copy=False)
            if block.dtype.kind == "f" and not np.all(np.isfinite(block)):
                raise ValueError(
                    f"cannot write {self.path}: slices {start} to {start + len(block) - 1} contain NaN or "
                    "infinite values"
                )
            yield start, block

    def pages(self) -> Iterator[np.ndarray]:
        """The slices one by one (for page-wise writers such as TIFF)."""
        for _, block in self:
            yield from block

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, self.dtype)
        for start, block in self:
            out[start:start + len(block)] = block
        return out if dtype is None else out.astype(dtype)


def write_json(path: Path, metadata: dict) -> None:
    """Write metadata as indented JSON (plain types only)."""
    Path(path).write_text(json.dumps(to_jsonable(metadata), indent=2, sort_keys=True))


def read_json_sidecar(path) -> dict:
    """The side-car metadata of ``path`` (empty when there is none)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise TomoFormatError(side, f"the JSON side-car is not valid JSON: {exc}") from None


def guard_callable(fn: Callable, path, what: str):
    """Call ``fn()`` turning low-level read errors into :class:`TomoFormatError`."""
    try:
        return fn()
    except (TomoFormatError, FileNotFoundError):
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise TomoFormatError(path, f"cannot read {what}: {exc}") from exc


ANGLE_SIDECAR_SUFFIXES = (".rawtlt", ".tlt", ".angles", ".angles.txt", "_angles.txt")
FOLDER_ANGLE_FILES = ("angles.txt", "angles.tlt", "angles.rawtlt", "theta.txt", "tilt.rawtlt")


def find_angle_sidecar(path) -> Path | None:
    """The side-car angle file of ``path``, if any.

    For a file ``scan.ext``: ``scan.rawtlt``, ``scan.tlt``, ``scan.angles``, ``scan.angles.txt``,
    ``scan_angles.txt`` (first found). For a folder: ``angles.txt``, ``angles.tlt``,
    ``angles.rawtlt``, ``theta.txt``, ``tilt.rawtlt`` inside it, or a single ``*.rawtlt``/``*.tlt``.
    """
    path = Path(path)
    if path.is_dir():
        for name in FOLDER_ANGLE_FILES:
            if (path / name).is_file():
                return path / name
        found = sorted(list(path.glob("*.rawtlt")) + list(path.glob("*.tlt")))
        return found[0] if len(found) == 1 else None
    stem = path.with_suffix("")
    for suffix in ANGLE_SIDECAR_SUFFIXES:
        cand = Path(str(stem) + suffix)
        if cand.is_file():
            return cand
    return None


def resolve_angles(angles, path, n_projections: int, found=None, found_units=None):
    """Angles from (in this order) the ``angles`` argument (array, path of a text file, or a
    callable ``f(n_projections) -> angles`` such as a parsed ``START:STOP`` range), the file's own
    angles ``found``, or a side-car file; a :class:`TomoFormatError` when none."""
    if callable(angles):
        angles = angles(n_projections)
    if angles is not None:
        if isinstance(angles, (str, os.PathLike)):
            return check_angles(read_angle_file(angles), n_projections, angles)
        return check_angles(angles, n_projections, path)
    if found is not None:
        return check_angles(found, n_projections, path, units=found_units)
    side = find_angle_sidecar(path)
    if side is not None:
        return check_angles(read_angle_file(side), n_projections, side)
    raise TomoFormatError(
        path,
        "no projection angles: the file has none and there is no side-car angle file "
        f"({', '.join('*' + s for s in ANGLE_SIDECAR_SUFFIXES)}); pass angles (degrees)",
    )
