"""Shared pieces of the readers and writers: lazy stacks, dtype/finite checks, JSON side-cars and
blocks of large volumes.

The error class, the angle family and the output/atomic-write family live in :mod:`.errors`,
:mod:`.angles` and :mod:`.atomic`; they are re-exported here, so ``from napari_ganrec.io._common
import atomic_write`` (and the like) keeps working."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .angles import (  # noqa: F401  (re-exported: the old import path)
    ANGLE_SIDECAR_SUFFIXES,
    FOLDER_ANGLE_FILES,
    check_angles,
    find_angle_sidecar,
    read_angle_file,
    resolve_angles,
)
from .atomic import (  # noqa: F401  (re-exported: the old import path)
    _TMP_MARK,
    _TMP_SUFFIX,
    _give_user_mode,
    _host,
    _pid_alive,
    _temp_prefix,
    _umask,
    atomic_paths,
    atomic_write,
    atomic_write_bytes,
    check_output_path,
    existing_file,
    remove_stale_temps,
)
from .errors import TomoFormatError

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


