"""Sources: where the sinograms of a slice range come from (lazy reads, picklable for Dask).

Input is a numpy array ``(n_slices, n_angles, n_det)`` of sinograms, any array-like with that shape
(h5py, zarr, memory maps: only the slab in hand is read), an object with a method
``sinograms(rows=slice(a, b)) -> (rows, angles, det)`` (such as :class:`napari_ganrec.io.TomoData`),
a path that :func:`napari_ganrec.io.read_tomo` opens, or a callable ``f(start, stop)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..geometry import validate_angles, validate_rows

__all__ = [
    "SinogramSource",
    "ArraySource",
    "NpySource",
    "LoaderSource",
    "PathSource",
    "CallableSource",
    "as_source",
    "source_angles",
    "resolve_rows",
    "slab_ranges",
]


# ---------------------------------------------------------------------------------------------
# sources: where the sinograms of a slice range come from
class SinogramSource:
    """Reads the sinograms of a range of slices: ``read(start, stop) -> (rows, angles, det)``.

    Subclasses set ``n_slices``, ``n_angles``, ``n_det`` and ``angles`` (degrees or None). A source
    is picklable when what it holds is (paths and plain parameters are; open files are not).
    """

    n_slices: int
    n_angles: int
    n_det: int
    angles: np.ndarray | None = None

    def read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short string that changes when the input does (used to refuse a mismatched resume)."""
        return f"{type(self).__name__}:{self.n_slices}x{self.n_angles}x{self.n_det}"

    def close(self) -> None:
        """Release open files (a later :meth:`read` opens them again)."""


class ArraySource(SinogramSource):
    """Any array-like ``(n_slices, n_angles, n_det)`` (numpy, memory map, h5py, zarr, dask)."""

    def __init__(self, array, angles=None):
        shape = tuple(int(s) for s in getattr(array, "shape", ()))
        if len(shape) != 3:
            raise ValueError(
                f"sinograms must be (n_slices, n_angles, n_det), got an array of shape {shape}"
            )
        self.array = array
        self.n_slices, self.n_angles, self.n_det = shape
        self.angles = None if angles is None else np.asarray(angles, dtype=np.float64)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(self.array[start:stop]), dtype=np.float32)


class NpySource(SinogramSource):
    """A ``.npy`` file of sinograms ``(n_slices, n_angles, n_det)``, memory-mapped (picklable)."""

    def __init__(self, path, angles=None, content_id: str | None = None):
        self.path = os.fspath(path)
        self.content_id = content_id
        arr = np.load(self.path, mmap_mode="r")
        if arr.ndim != 3:
            raise ValueError(f"{self.path}: expected (n_slices, n_angles, n_det), got {arr.shape}")
        self.n_slices, self.n_angles, self.n_det = (int(s) for s in arr.shape)
        self.angles = None if angles is None else np.asarray(angles, dtype=np.float64)
        self._arr = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arr"] = None
        return state

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return np.array(self._arr[start:stop], dtype=np.float32)  # a writable in-memory copy

    def fingerprint(self) -> str:
        if self.content_id is not None:
            return self.content_id
        st = os.stat(self.path)
        return f"npy:{os.path.abspath(self.path)}:{st.st_size}:{int(st.st_mtime)}"

    def close(self) -> None:
        self._arr = None


def _n_rows_of(obj) -> int | None:
    for name in ("n_rows", "n_slices"):
        value = getattr(obj, name, None)
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


class LoaderSource(SinogramSource):
    """An object with ``sinograms(rows=slice(a, b)) -> (rows, angles, det)`` (e.g. ``TomoData``).

    The number of slices comes from its ``n_rows`` (or ``n_slices``) attribute, or ``n_slices``.
    A :class:`~napari_ganrec.io.TomoData` is read with :func:`napari_ganrec.io.line_integrals`
    (the one read path: one slice reads like many), with ``kind`` (a
    :class:`~napari_ganrec.io.DataKind`) or ``data`` (``--data``: ``"auto"``, ``"raw"``, ...)
    resolved once for all the slabs.
    """

    def __init__(self, loader, n_slices: int | None = None, angles=None, kind=None, data: str = "auto",
                 **read_kwargs):
        if not callable(getattr(loader, "sinograms", None)):
            raise ValueError("loader must have a method sinograms(rows=slice(a, b))")
        self.loader = loader
        self.read_kwargs = read_kwargs
        self.kind = _tomo_kind(self.loader, kind, data, read_kwargs)
        n = n_slices if n_slices is not None else _n_rows_of(loader)
        if n is None:
            raise ValueError(
                f"cannot tell how many slices {type(loader).__name__} has: give n_slices, or give "
                "the loader an n_rows attribute"
            )
        self.n_slices = int(n)
        probe = self.read(0, 1)
        self.n_angles, self.n_det = probe.shape[1:]
        if angles is None:
            angles = getattr(loader, "angles", None)
        self.angles = None if angles is None else np.asarray(angles, dtype=np.float64)

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.kind is not None:
            from ..io import line_integrals

            return line_integrals(self.loader, slice(start, stop), kind=self.kind)
        out = np.asarray(self.loader.sinograms(rows=slice(start, stop), **self.read_kwargs))
        if out.ndim == 2:
            out = out[None]
        if out.ndim != 3 or out.shape[0] != stop - start:
            raise ValueError(
                f"loader.sinograms(rows=slice({start}, {stop})) returned shape {out.shape}, "
                f"expected ({stop - start}, n_angles, n_det)"
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def fingerprint(self) -> str:
        fp = getattr(self.loader, "fingerprint", None)
        if callable(fp):
            return str(fp())
        meta = getattr(self.loader, "metadata", None)
        src = meta.get("source") if isinstance(meta, dict) else None
        shape = f"{self.n_slices}x{self.n_angles}x{self.n_det}"
        kind = "" if self.kind is None else f":{self.kind.kind}"
        return f"loader:{type(self.loader).__name__}:{src}:{shape}{kind}"


def _tomo_kind(loader, kind, data: str, read_kwargs: dict):
    """The DataKind a TomoData loader is read with (None for other loaders: their own sinograms())."""
    from ..io import TomoData, resolve_kind

    if not isinstance(loader, TomoData):
        return None
    if "log" in read_kwargs:  # older spelling: log=False -> line integrals as they are
        log = read_kwargs.pop("log")
        if log is not None and data == "auto":
            data = "line_integrals" if not log else (
                "raw" if loader.flats is not None or loader.darks is not None else "transmission")
    if read_kwargs:
        raise ValueError(f"unknown read options for a TomoData source: {', '.join(read_kwargs)}")
    if kind is None:
        kind = resolve_kind(loader, data)
        if kind.assumed:
            import warnings

            warnings.warn(f"{loader.metadata.get('source', 'the data')}: {kind.reason}; if that is wrong, "
                          "say what the data are with data='raw'|'transmission'|'line-integrals'",
                          UserWarning, stacklevel=4)
    return kind


class PathSource(LoaderSource):
    """A file that :func:`napari_ganrec.io.read_tomo` opens; opened lazily in each process.

    Only the path and the read options are pickled, so a Dask task can carry it.
    """

    def __init__(self, path, angles=None, open_kwargs: dict | None = None, kind=None, data: str = "auto",
                 **read_kwargs):
        self.path = os.fspath(path)
        self.open_kwargs = dict(open_kwargs or {})
        self._tomo = None
        tomo = self._open()
        super().__init__(tomo, n_slices=_n_rows_of(tomo), angles=angles, kind=kind, data=data, **read_kwargs)

    def _open(self):
        if self._tomo is None:
            try:
                from ..io import read_tomo
            except ImportError as exc:  # pragma: no cover - depends on the io package being there
                raise ValueError(
                    f"cannot read {self.path}: napari_ganrec.io is not available") from exc
            self._tomo = read_tomo(self.path, **self.open_kwargs)
        return self._tomo

    @property
    def loader(self):
        return self._open()

    @loader.setter
    def loader(self, value):
        self._tomo = value

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_tomo"] = None
        return state

    def fingerprint(self) -> str:
        st = os.stat(self.path)
        kind = "" if self.kind is None else f":{self.kind.kind}"
        return f"path:{os.path.abspath(self.path)}:{st.st_size}:{int(st.st_mtime)}{kind}"

    def close(self) -> None:
        if self._tomo is not None:
            close = getattr(self._tomo, "close", None)
            if callable(close):
                close()
            self._tomo = None


class CallableSource(SinogramSource):
    """A callable ``f(start, stop) -> (stop - start, n_angles, n_det)``; needs ``n_slices``."""

    def __init__(self, func: Callable[[int, int], Any], n_slices: int | None, angles=None):
        if n_slices is None:
            raise ValueError("n_slices is required when the sinograms come from a callable")
        self.func = func
        self.n_slices = int(n_slices)
        probe = self.read(0, 1)
        self.n_angles, self.n_det = probe.shape[1:]
        self.angles = None if angles is None else np.asarray(angles, dtype=np.float64)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.asarray(self.func(start, stop))
        if out.ndim != 3 or out.shape[0] != stop - start:
            raise ValueError(
                f"the sinogram callable returned shape {out.shape} for rows {start}:{stop}, "
                f"expected ({stop - start}, n_angles, n_det)"
            )
        return np.ascontiguousarray(out, dtype=np.float32)


def as_source(sinograms, n_slices: int | None = None, angles=None) -> SinogramSource:
    """Wrap what the user gave as a :class:`SinogramSource`.

    Parameters
    ----------
    sinograms : array-like, loader, path or callable
        See the module docstring. A :class:`SinogramSource` is returned as it is. A path is
        opened with :func:`napari_ganrec.io.read_tomo` (a projection stack, whatever its format);
        for a ``.npy`` file of sinograms ``(n_slices, n_angles, n_det)`` use :class:`NpySource`.
    n_slices : int, optional
        Number of slices, for a callable (and loaders that do not say).
    angles : array_like, optional
        Angles (degrees) handed to ``read_tomo`` when ``sinograms`` is a path (files that carry
        none need them to open).

    Raises
    ------
    ValueError
        When the input is none of these, or has the wrong number of dimensions.
    """
    if isinstance(sinograms, SinogramSource):
        return sinograms
    if isinstance(sinograms, (str, os.PathLike)):
        opts = {} if angles is None else {"angles": np.asarray(angles, dtype=np.float64)}
        return PathSource(sinograms, open_kwargs=opts)
    if callable(getattr(sinograms, "sinograms", None)):
        return LoaderSource(sinograms, n_slices=n_slices)
    if hasattr(sinograms, "shape") and hasattr(sinograms, "__getitem__"):
        return ArraySource(sinograms)
    if isinstance(sinograms, (list, tuple)):
        return ArraySource(np.asarray(sinograms, dtype=np.float32))
    if callable(sinograms):
        return CallableSource(sinograms, n_slices)
    raise ValueError(
        "sinograms must be an array (n_slices, n_angles, n_det), an object with "
        f"sinograms(rows=...), a path or a callable f(start, stop); got {type(sinograms).__name__}"
    )


def source_angles(source: SinogramSource, angles=None) -> np.ndarray:
    """``angles`` (degrees) checked against the source's projection count, or the source's own.

    Raises
    ------
    ValueError
        No angles given and the source carries none, or a count that does not match.
    """
    if angles is None:
        angles = source.angles
        if angles is None:
            raise ValueError("angles are required (the input does not carry them)")
    return validate_angles(angles, n_angles=source.n_angles, n_det=source.n_det, tomographic=True)


def resolve_rows(rows, n_slices: int) -> tuple[int, int]:
    """``rows`` (None, a slice or ``(start, stop)``) checked against ``n_slices``: see
    :func:`napari_ganrec.geometry.validate_rows`."""
    return validate_rows(rows, n_slices)


def slab_ranges(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """Split ``[start, stop)`` into consecutive ``(a, b)`` ranges of at most ``size`` slices."""
    if size < 1:
        raise ValueError(f"slab size must be a positive integer, got {size}")
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


_resolve_rows = resolve_rows  # the name distributed.py imports
