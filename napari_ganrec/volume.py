"""Whole volumes, slice by slice: warm start, batching and lazily read input.

A tomogram is a stack of independent slices (sinograms), but neighbouring slices look alike. As in
Yang et al. (2020), the first slab is reconstructed with the full iteration count and every next
slab starts from the previous slab's network and optimiser weights, needing only a few iterations
(``warm_iterations``); a slab can also stop early once its data loss has stopped falling (``tol``).

Several adjacent slices can go through the solver together (``batch``), in one of two ways:

``"shared"``
    One generator (and discriminator) over the whole slab: the batch dimension of the networks.
``"independent"``
    One generator and discriminator per slice, stacked in one batch with :func:`torch.vmap`: the
    same arithmetic as separate runs, done in one pass.

``benchmarks/volume.py`` measures both (see ``docs/volume.md``); the default is the one that gives
better quality per second.

Input is a numpy array ``(n_slices, n_angles, n_det)`` of sinograms, any array-like with that shape
(h5py, zarr, memory maps: only the slab in hand is read), an object with a method
``sinograms(rows=slice(a, b)) -> (rows, angles, det)`` (such as :class:`napari_ganrec.io.TomoData`),
a path that :func:`napari_ganrec.io.read_tomo` opens, or a callable ``f(start, stop)``. Memory is
bounded by the slab, not by the volume: :func:`iter_volume` reads one slab ahead, in a thread.

Nothing here imports Qt or napari: the widget drives :func:`iter_volume` from a thread worker.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .acceleration import Acceleration, CompiledOrEager, resolve_acceleration
from .api import DEFAULT_TV_WEIGHT
from .ganrec import GANrecConfig, GANrecSolver, SolverState, make_config
from .geometry import Geometry, circle_mask, validate_angles, validate_sinogram
from .projector import Projector, resolve_device

__all__ = [
    "BATCH_MODES",
    "VolumeProgress",
    "SinogramSource",
    "ArraySource",
    "NpySource",
    "LoaderSource",
    "PathSource",
    "CallableSource",
    "as_source",
    "slab_ranges",
    "iter_volume",
    "reconstruct_volume",
    "StackedGANrecSolver",
]

BATCH_MODES = ("shared", "independent")
DEFAULT_BATCH_MODE = "shared"
_METHODS = ("ganrec", "fbp", "sirt", "tv")


# ---------------------------------------------------------------------------------------------
# progress records
@dataclass
class VolumeProgress:
    """A small record yielded by :func:`iter_volume`.

    Attributes
    ----------
    slab : int
        0-based number of the slab (group of ``batch`` adjacent slices) being reconstructed.
    n_slabs : int
        Slabs in the run.
    indices : tuple of int
        Source slice (detector row) indices of this slab.
    positions : tuple of int
        Positions of these slices in the output volume (``indices - rows.start``).
    iteration, iterations : int
        Iterations done on this slab so far, and the most it will get.
    losses : dict
        Losses of the last iteration (GANrec: ``g_loss``, ``d_loss``, ``l1``, ``adv``).
    images : numpy.ndarray or None
        ``(len(indices), n_det, n_det)`` float32: the finished slices when ``finished`` (or the
        current ones on preview records); ``None`` otherwise.
    finished : bool
        The slab is done and ``images`` are final.
    converged : bool
        The slab stopped before ``iterations`` because its loss had converged (``tol``).
    warm : bool
        The slab started from earlier weights.
    done, total : int
        Slices finished so far (this slab included when ``finished``) and in the run.
    seconds : float
        Seconds spent on this slab so far.
    elapsed : float
        Seconds since the run started.
    """

    slab: int
    n_slabs: int
    indices: tuple[int, ...]
    positions: tuple[int, ...]
    iteration: int
    iterations: int
    losses: dict[str, float] = field(default_factory=dict)
    images: np.ndarray | None = field(default=None, repr=False)
    finished: bool = False
    converged: bool = False
    warm: bool = False
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def fraction(self) -> float:
        """Fraction of the run's slices finished."""
        return self.done / self.total if self.total else 1.0


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
            from .io import line_integrals

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
    from .io import TomoData, resolve_kind

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
                from .io import read_tomo
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
    return validate_angles(angles, n_angles=source.n_angles)


def _resolve_rows(rows, n_slices: int) -> tuple[int, int]:
    if rows is None:
        return 0, n_slices
    if isinstance(rows, slice):
        if rows.step not in (None, 1):
            raise ValueError(f"rows must be a contiguous range (step 1), got {rows}")
        start, stop, _ = rows.indices(n_slices)
    elif isinstance(rows, (tuple, list)) and len(rows) == 2:
        start, stop, _ = slice(int(rows[0]), int(rows[1])).indices(n_slices)
    else:
        raise ValueError(f"rows must be None, a slice or (start, stop), got {rows!r}")
    if stop <= start:
        raise ValueError(f"rows {rows!r} selects no slice of the {n_slices} available")
    return start, stop


def slab_ranges(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """Split ``[start, stop)`` into consecutive ``(a, b)`` ranges of at most ``size`` slices."""
    if size < 1:
        raise ValueError(f"slab size must be a positive integer, got {size}")
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


# ---------------------------------------------------------------------------------------------
# independent networks stacked in one batch
def _mangle(name: str) -> str:
    return name.replace(".", "__")


class _Stacked(nn.Module):
    """``copies`` independent instances of ``base`` evaluated in one batch with ``torch.vmap``.

    The input's first dimension is the copy index (one sample per copy). Parameters are stacked
    tensors ``(copies, ...)`` registered under mangled names, in the order of ``base``'s own, so
    that an optimiser over them is an independent optimiser per copy (Adam is element-wise).
    """

    def __init__(self, base: nn.Module, copies: int):
        super().__init__()
        object.__setattr__(self, "_base", base)  # not a submodule: its weights are not ours
        self.copies = int(copies)
        self._names = [name for name, _ in base.named_parameters()]
        for name, p in base.named_parameters():
            stacked = p.detach().unsqueeze(0).repeat(self.copies, *([1] * p.ndim)).clone()
            param = nn.Parameter(stacked, requires_grad=p.requires_grad)
            self.register_parameter(_mangle(name), param)
        if any(True for _ in base.buffers()):
            raise ValueError("independent batching does not support networks with buffers "
                             "(e.g. spectral_norm=True); use batch_mode='shared'")

    def train(self, mode: bool = True):
        super().train(mode)
        self._base.train(mode)
        return self

    def stacked(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, _mangle(name)) for name in self._names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self._base

        def one(params, xi):
            return torch.func.functional_call(base, params, (xi.unsqueeze(0),)).squeeze(0)

        return torch.vmap(one, randomness="different")(self.stacked(), x)

    # one network's weights <-> the stack
    def single_state(self, index: int = -1) -> dict[str, torch.Tensor]:
        return {name: t[index].detach() for name, t in self.stacked().items()}

    def load_single(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.stacked().items():
                t.copy_(state[name].to(t.device, t.dtype).unsqueeze(0).expand_as(t))


def _optim_single(opt_state: dict, index: int) -> dict:
    out = {"state": {}, "param_groups": [dict(g) for g in opt_state["param_groups"]]}
    for key, s in opt_state["state"].items():
        out["state"][key] = {
            k: (v[index].detach().clone() if torch.is_tensor(v) and v.ndim > 0 else
                (v.detach().clone() if torch.is_tensor(v) else v))
            for k, v in s.items()
        }
    return out


def _optim_broadcast(opt_state: dict, params: list[torch.Tensor]) -> dict:
    out = {"state": {}, "param_groups": [dict(g) for g in opt_state["param_groups"]]}
    for key, s in opt_state["state"].items():
        p = params[int(key)]
        out["state"][key] = {
            k: (v.to(p.device).unsqueeze(0).expand(p.shape[0], *v.shape).clone()
                if torch.is_tensor(v) and v.ndim > 0 else v)
            for k, v in s.items()
        }
    return out


class StackedGANrecSolver(GANrecSolver):
    """GANrec with one generator and one discriminator per slice, stacked in one batch.

    Same interface as :class:`~napari_ganrec.ganrec.GANrecSolver`. Every slice starts from the same
    weights (the ``seed``'s, or ``warm_start``'s single network); :meth:`state` returns the network
    of the last slice, so a warm start passes between shared and independent solvers and between
    slabs of different sizes.
    """

    def __init__(self, projector, sinograms, config=None, seed=0, warm_start=None, acceleration=None):
        super().__init__(projector, sinograms, config, seed=seed, warm_start=None,
                         acceleration=acceleration)
        cfg = self.config
        self.G.use_channels_last(False)  # vmap over stacked (5-D) weights: plain layout
        self.G = _Stacked(self.G, self.batch).to(self.device)
        self.D = _Stacked(self.D, self.batch).to(self.device)
        self._run_g = CompiledOrEager(self.G, False, name="stacked generator")  # vmap: eager
        # The losses are means over the stack, so each network's gradient is its own divided by the
        # batch size B; Adam cancels the factor, exactly so with its eps divided by B too.
        eps = 1e-8 / self.batch
        self.opt_g = self._adam(self.G.parameters(), cfg.lr_g, eps)
        self.opt_d = self._adam(self.D.parameters(), cfg.lr_d, eps)
        if warm_start is not None:
            self.load_state(warm_start)
        self._set_lr()
        self._snapshot = self._take_snapshot()

    def state(self) -> SolverState:
        """The last slice's networks and optimiser states (CPU), as a single-network state."""
        self.check()
        def cpu(d):
            return {k: v.detach().cpu().clone() for k, v in d.items()}

        def cpu_opt(d):
            for s in d["state"].values():
                for k, v in list(s.items()):
                    if torch.is_tensor(v):
                        s[k] = v.cpu()
            return d

        return SolverState(
            config=self.config,
            sino_shape=self.projector.geometry.sino_shape,
            generator=cpu(self.G.single_state(-1)),
            discriminator=cpu(self.D.single_state(-1)),
            opt_g=cpu_opt(_optim_single(self.opt_g.state_dict(), -1)),
            opt_d=cpu_opt(_optim_single(self.opt_d.state_dict(), -1)),
            iteration=self.iteration,
            lr_scale=self.lr_scale,
        )

    def device_state(self) -> SolverState:
        """Like :meth:`state` but the tensors stay on the solver's device (no host copy)."""
        return SolverState(
            config=self.config,
            sino_shape=self.projector.geometry.sino_shape,
            generator=self.G.single_state(-1),
            discriminator=self.D.single_state(-1),
            opt_g=_optim_single(self.opt_g.state_dict(), -1),
            opt_d=_optim_single(self.opt_d.state_dict(), -1),
            iteration=self.iteration,
            lr_scale=self.lr_scale,
        )

    def load_state(self, state: SolverState) -> None:
        """Start every slice's networks from one network's state."""
        self.check_state(state)
        self.G.load_single(state.generator)
        self.D.load_single(state.discriminator)
        self.opt_g.load_state_dict(_optim_broadcast(state.opt_g, list(self.G.parameters())))
        self.opt_d.load_state_dict(_optim_broadcast(state.opt_d, list(self.D.parameters())))
        self.lr_scale = state.lr_scale
        self._set_lr()


def _device_state(solver: GANrecSolver) -> SolverState:
    """The solver's weights as a warm start, without copying them to the host."""
    if isinstance(solver, StackedGANrecSolver):
        return solver.device_state()
    return SolverState(
        config=solver.config,
        sino_shape=solver.projector.geometry.sino_shape,
        generator={k: v.detach() for k, v in solver.G.state_dict().items()},
        discriminator={k: v.detach() for k, v in solver.D.state_dict().items()},
        opt_g=solver.opt_g.state_dict(),
        opt_d=solver.opt_d.state_dict(),
        iteration=solver.iteration,
        lr_scale=solver.lr_scale,
    )


def _make_solver(mode, projector, sino, config, seed, warm, acceleration=None):
    cls = StackedGANrecSolver if mode == "independent" and sino.shape[0] > 1 else GANrecSolver
    return cls(projector, sino, config, seed=seed, warm_start=warm, acceleration=acceleration)


# ---------------------------------------------------------------------------------------------
# early stopping
class _Convergence:
    """Stop when the mean data loss of the last ``window`` iterations fell by less than ``tol``
    (relative) against the ``window`` before.

    The losses are kept as the solver returns them (on the device) and read only when a decision
    is due: at ``min_iterations`` and every ``window`` iterations after, so a GPU is not made to
    wait for the host every iteration.
    """

    def __init__(self, tol: float | None, window: int, min_iterations: int):
        self.tol = tol
        self.window = window
        self.min_iterations = max(min_iterations, 2 * window)
        self.count = 0
        self.pending: list = []
        self.values: list[float] = []

    def update(self, losses) -> bool:
        if self.tol is None:
            return False
        self.count += 1
        self.pending.append(losses)
        if self.count < self.min_iterations or (self.count - self.min_iterations) % self.window:
            return False
        for item in self.pending:
            value = float(item["l1"])
            if math.isfinite(value):
                self.values.append(value)
        self.pending = []
        w = self.window
        if len(self.values) < 2 * w:
            return False
        prev = float(np.mean(self.values[-2 * w:-w]))
        cur = float(np.mean(self.values[-w:]))
        return (prev - cur) <= self.tol * abs(prev)


# ---------------------------------------------------------------------------------------------
# the generator
def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def iter_volume(
    sinograms,
    angles=None,
    rows=None,
    *,
    method: str = "ganrec",
    iterations: int = 1000,
    warm_iterations: int | None = 100,
    first_iterations: int | None = None,
    tol: float | None = None,
    window: int = 10,
    min_iterations: int = 0,
    batch: int = 1,
    batch_mode: str = DEFAULT_BATCH_MODE,
    center: float | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    preset: str | GANrecConfig | None = "default",
    warm_start: SolverState | bool | None = True,
    progress_every: int | None = 10,
    preview: bool = False,
    n_slices: int | None = None,
    tv_weight: float | None = None,
    filter_name: str = "ramp",
    prefetch: bool = True,
    projector: Projector | None = None,
    state_out: list | None = None,
    acceleration: Acceleration | dict | None = None,
    **options,
) -> Iterator[VolumeProgress]:
    """Reconstruct a range of slices, slab by slab, yielding :class:`VolumeProgress` records.

    Parameters
    ----------
    sinograms : array-like, loader, path or callable
        ``(n_slices, n_angles, n_det)`` sinograms, or an object with ``sinograms(rows=slice)``, a
        path for :func:`napari_ganrec.io.read_tomo`, or ``f(start, stop)`` (give ``n_slices``).
    angles : array_like, optional
        Degrees, one per sinogram row (default: the loader's ``angles``).
    rows : slice or (start, stop), optional
        Slices to reconstruct (default all).
    method : {"ganrec", "fbp", "sirt", "tv"}
        Reconstruction method; warm start and early stopping apply to GANrec.
    iterations : int
        Iterations of the first slab (and of every slab without warm start).
    warm_iterations : int, optional
        Most iterations of a slab that starts from the previous slab's weights (default 100;
        ``None``: ``iterations``).
    first_iterations : int, optional
        Iterations of the first slab when ``warm_start`` is a :class:`SolverState` (default
        ``warm_iterations``): a state from a farther slice may need more than a neighbour's.
    tol : float, optional
        Early stop: a slab ends once the mean L1 data loss of the last ``window`` iterations fell by
        less than ``tol`` (relative) against the ``window`` before (checked after
        ``min_iterations`` and every ``window`` iterations after). ``None``: off.
    window, min_iterations : int
        Early stopping window, and iterations always done (at least ``2 * window``).
    batch : int
        Adjacent slices reconstructed together (one slab) on the device.
    batch_mode : {"shared", "independent"}
        One generator over the slab, or one network per slice stacked in one batch.
    center : float, optional
        Rotation centre in detector pixels (default ``n_det / 2``).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda:N"``.
    seed : int
        Seed of the network initialisation; CPU runs are reproducible.
    preset : str or GANrecConfig
        GANrec preset or config; ``**options`` override its fields.
    warm_start : bool or SolverState
        ``True``: chain slabs (first slab ``iterations``, then ``warm_iterations``); ``False``:
        every slab from scratch with ``iterations``; a :class:`SolverState`: start the first slab
        from it too (with ``warm_iterations``).
    progress_every : int, optional
        Also yield an unfinished record every this-many iterations (so a thread worker can stop
        or pause within a slab); ``None``: only finished slabs.
    preview : bool
        Put the current images in those unfinished records.
    n_slices : int, optional
        Number of slices, for a callable input.
    tv_weight, filter_name
        Options of ``method="tv"`` and ``"fbp"``.
    prefetch : bool
        Read the next slab in a background thread while this one computes.
    projector : Projector, optional
        Reuse a projector built for this geometry and device.
    state_out : list, optional
        When given, the final GANrec state (CPU :class:`SolverState`) is appended to it.
    acceleration : Acceleration or dict, optional
        GANrec execution options (:class:`~napari_ganrec.acceleration.Acceleration`; default
        automatic: as for :func:`~napari_ganrec.api.iter_reconstruct`).

    Yields
    ------
    VolumeProgress
        One ``finished`` record per slab (its final slices in ``images``), in slice order, and
        unfinished ones in between. Closing the generator stops the run.

    Raises
    ------
    ValueError
        Bad input, angle count, rows, iteration counts or options.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if batch_mode not in BATCH_MODES:
        raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
    iterations = _check_int("iterations", iterations, 1)
    warm_iterations = iterations if warm_iterations is None else _check_int(
        "warm_iterations", warm_iterations, 1)
    first_iterations = warm_iterations if first_iterations is None else _check_int(
        "first_iterations", first_iterations, 1)
    batch = _check_int("batch", batch, 1)
    window = _check_int("window", window, 1)
    min_iterations = _check_int("min_iterations", min_iterations, 0)
    if progress_every is not None:
        progress_every = _check_int("progress_every", progress_every, 1)
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be None or a non-negative number, got {tol!r}")
    if not isinstance(warm_start, (bool, SolverState)) and warm_start is not None:
        raise ValueError(
            f"warm_start must be True, False or a SolverState, got {type(warm_start).__name__}")
    source = as_source(sinograms, n_slices=n_slices, angles=angles)
    ang = source_angles(source, angles)
    start, stop = _resolve_rows(rows, source.n_slices)
    if method == "ganrec" and tv_weight is not None:
        options["tv_weight"] = tv_weight  # the weight of the preset's prior, as in iter_reconstruct
    config = make_config(preset, **options) if method == "ganrec" else None
    if method != "ganrec" and options:
        raise ValueError(f"options {sorted(options)} only apply to method='ganrec'")
    if batch_mode == "independent" and config is not None and config.spectral_norm and batch > 1:
        raise ValueError("batch_mode='independent' does not support spectral_norm=True")
    geo = Geometry.create(ang, source.n_det, center)
    dev = resolve_device(device)
    resolve_acceleration(acceleration, dev)  # bad options fail here
    return _volume_run(source, geo, dev, start, stop, method, iterations, warm_iterations,
                       first_iterations, tol,
                       window, min_iterations, batch, batch_mode, int(seed), config, warm_start,
                       progress_every, preview, DEFAULT_TV_WEIGHT if tv_weight is None else float(tv_weight),
                       filter_name, prefetch, projector,
                       state_out, acceleration)


def _volume_run(source, geo, dev, start, stop, method, iterations, warm_iterations,
                first_iterations, tol, window,
                min_iterations, batch, batch_mode, seed, config, warm_start, progress_every,
                preview, tv_weight, filter_name, prefetch, projector, state_out, acceleration):
    t0 = time.perf_counter()
    if projector is None or projector.geometry != geo or projector.device != dev:
        projector = Projector(geo, device=dev)
    mask = torch.from_numpy(circle_mask(geo.n_det)).to(dev)
    slabs = slab_ranges(start, stop, batch)
    total = stop - start
    pool = ThreadPoolExecutor(max_workers=1) if prefetch and len(slabs) > 1 else None
    pin = dev.type == "cuda"

    def load(a, b):
        sino = validate_sinogram(source.read(a, b), name=f"sinograms of slices {a}:{b}")
        t = torch.from_numpy(sino)
        return t.pin_memory() if pin else t

    chain = warm_start is not False and warm_start is not None
    state = warm_start if isinstance(warm_start, SolverState) else None
    done = 0
    pending = pool.submit(load, *slabs[0]) if pool else None
    try:
        for k, (a, b) in enumerate(slabs):
            sino_cpu = pending.result() if pool else load(a, b)
            if pool and k + 1 < len(slabs):
                pending = pool.submit(load, *slabs[k + 1])
            sino = sino_cpu.to(dev, non_blocking=pin)
            idx = tuple(range(a, b))
            pos = tuple(i - start for i in idx)
            slab_t0 = time.perf_counter()

            def record(it, n_it, losses, images, finished, converged, warm, _idx=idx, _pos=pos,
                       _k=k, _t=slab_t0):
                now = time.perf_counter()
                return VolumeProgress(_k, len(slabs), _idx, _pos, it, n_it, losses, images,
                                      finished, converged, warm, done, total,  # noqa: B023 (current count)
                                      now - _t, now - t0)

            def to_numpy(x):
                return (x * mask).detach().to("cpu").numpy().astype(np.float32, copy=False)

            if method == "fbp":
                from .classical import fbp

                with torch.no_grad():
                    x = fbp(projector, sino, filter_name)
                done += b - a
                yield record(1, 1, {}, to_numpy(x), True, False, False)
                continue
            if method in ("sirt", "tv"):
                from .classical import sirt_iter, tv_iter

                it_gen = sirt_iter(projector, sino, iterations) if method == "sirt" else tv_iter(
                    projector, sino, iterations, tv_weight=tv_weight)
                x = None
                try:
                    for it, x, res in it_gen:
                        if progress_every and it % progress_every == 0 and it < iterations:
                            yield record(it, iterations, {"residual": res},
                                         to_numpy(x) if preview else None, False, False, False)
                finally:
                    it_gen.close()
                done += b - a
                yield record(iterations, iterations, {"residual": res}, to_numpy(x), True, False,
                             False)
                continue
            warm = state is not None
            n_it = (first_iterations if k == 0 else warm_iterations) if warm else iterations
            solver = _make_solver(batch_mode, projector, sino, config, seed, state, acceleration)
            stopper = _Convergence(tol, window, min_iterations)
            losses: dict[str, float] = {}
            converged = False
            try:
                it = 0
                for it in range(1, n_it + 1):
                    losses = solver.step()
                    converged = stopper.update(losses) and it < n_it
                    if converged:
                        break
                    if progress_every and it % progress_every == 0 and it < n_it:
                        imgs = None
                        if preview:
                            with torch.no_grad():
                                imgs = to_numpy(solver.image())
                        yield record(it, n_it, losses, imgs, False, False, warm)
                with torch.no_grad():
                    x = solver.image()
                    losses = dict(losses)
                    losses["residual"] = float(
                        torch.linalg.vector_norm(projector.forward(x * mask) - sino)
                        / torch.linalg.vector_norm(sino).clamp(min=1e-20))
                images = to_numpy(x)
                if chain:
                    solver.check()  # no non-finite iterate passes to the next slab
                    state = _device_state(solver)
                if state_out is not None and k == len(slabs) - 1:
                    state_out.append(solver.state())
            finally:
                solver.close()
            done += b - a
            yield record(it, n_it, losses, images, True, converged, warm)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def reconstruct_volume(
    sinograms,
    angles=None,
    rows=None,
    *,
    out=None,
    progress: Callable[[VolumeProgress], Any] | None = None,
    **kwargs,
) -> np.ndarray:
    """Reconstruct a range of slices and return the volume ``(n_rows, n_det, n_det)`` float32.

    Takes the arguments of :func:`iter_volume`.

    Parameters
    ----------
    out : array-like, optional
        Write the slices into this ``(n_rows, n_det, n_det)`` array (e.g. a memory map or a Zarr
        array) as they finish, and return it: memory stays bounded by the slab.
    progress : callable, optional
        Called with every finished :class:`VolumeProgress` record.

    Examples
    --------
    >>> vol = reconstruct_volume(sinos, angles, iterations=1000, warm_iterations=100, tol=1e-3)
    """
    kwargs.setdefault("progress_every", None)
    result = out
    for rec in iter_volume(sinograms, angles, rows, **kwargs):
        if not rec.finished:
            continue
        if result is None:
            n_det = rec.images.shape[-1]
            result = np.zeros((rec.total, n_det, n_det), dtype=np.float32)
        elif tuple(result.shape[1:]) != rec.images.shape[1:] or result.shape[0] != rec.total:
            raise ValueError(
                f"out must have shape ({rec.total}, {rec.images.shape[1]}, {rec.images.shape[2]}), "
                f"got {tuple(result.shape)}"
            )
        result[rec.positions[0]:rec.positions[-1] + 1] = rec.images
        if progress is not None:
            progress(rec)
    return result
