"""Volumes on many workers: slab tasks on Dask, a resumable chunked output, atomic assembly.

:func:`run_distributed` cuts the slice range into slabs of ``slab_size`` slices and hands each slab
to a Dask worker (a local cluster with ``workers=N``, one worker per GPU when there are several, or
an existing cluster at ``scheduler=ADDRESS``). Every task reads only its own rows (the input is read
lazily), reconstructs them with :func:`~napari_ganrec.volume.iter_volume` (warm start from slice to
slice inside the slab), writes its slices into a Zarr array chunked one slice per chunk, and then
drops a done-marker file. A run that is killed and started again with the same arguments skips the
slabs that have a marker; one started with other arguments is refused rather than mixed. At the
end the final TIFF / HDF5 / NumPy file is assembled slab by slab into a temporary file and moved
into place atomically.

Warm start across tasks: with an iterative method, the first slice of the range is reconstructed
once with the full ``iterations`` (the seed), every stage's state and the slice are saved beside the
output, and every slab task starts from them with ``restart_iterations`` (the slab holding the seed
slice takes it from the seed instead of reconstructing it again), then chains its own slices with
``warm_iterations``. Tasks do not depend on each other, so the result does not depend on the number
of workers.

Tasks carry paths and plain parameters, never open files: give a path (read with
:func:`napari_ganrec.io.read_tomo`), a :class:`~napari_ganrec.volume.NpySource` (a ``.npy`` file of
sinograms), a picklable loader, or a numpy array (written once to ``input.npy`` in the work folder
and memory-mapped by the workers).

This module is the driver (option checks, the resumable bookkeeping, assembly); the tasks the
workers run and the Dask submission loop are in :mod:`napari_ganrec.distributed_tasks`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .distributed_tasks import _run_on_dask, _seed_task, _slab_task
from .geometry import validate_rows
from .io import write_volume
from .io._common import atomic_write, atomic_write_bytes, remove_stale_temps
from .io.zarr_store import PARAMS_KEY, open_slice_store, record_metadata
from .methods import DEFAULT_METHOD, make_plan
from .volume import (
    ArraySource,
    NpySource,
    SinogramSource,
    as_source,
    iter_volume,
    slab_ranges,
    source_angles,
)

__all__ = ["SlabDone", "run_distributed", "assemble", "OUTPUT_SUFFIXES"]

# outputs written slab by slab (never the whole volume in memory), and the chunked store itself
ASSEMBLE_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5", ".hdf", ".nxs", ".npy")
OUTPUT_SUFFIXES = ASSEMBLE_SUFFIXES + (".zarr",)
_STORE = "volume.zarr"
_SEED = "seed_state.pt"
_DONE = "done"
# iter_volume arguments that are not stage options
_NOT_STAGE = ("tol", "window", "min_iterations", "batch", "batch_mode", "center", "device", "seed",
              "prefetch", "projector", "acceleration", "n_slices", "first_iterations")


@dataclass
class SlabDone:
    """Progress of :func:`run_distributed`: one slab finished (or found done and skipped).

    Attributes
    ----------
    start, stop : int
        Source slice range of the slab.
    done, total : int
        Slices finished so far and in the run.
    seconds : float
        Seconds the task took (0 when skipped).
    iterations : int
        Iterations (all stages) the slab's slices got in total (0 when skipped).
    skipped : bool
        The slab was already done by an earlier run.
    worker : str
        Address or name of the worker that ran it.
    """

    start: int
    stop: int
    done: int
    total: int
    seconds: float = 0.0
    iterations: int = 0
    skipped: bool = False
    worker: str = ""


# ---------------------------------------------------------------------------------------------
# small file helpers (every write goes through napari_ganrec.io: atomic, with the user's umask)
def _marker(work: Path, a: int, b: int) -> Path:
    return work / _DONE / f"slab_{a:06d}_{b:06d}.json"


def _hash_array(arr: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((arr.shape, str(arr.dtype))).encode())
    step = max(1, (64 << 20) // max(1, arr[0].nbytes))
    for i in range(0, arr.shape[0], step):
        h.update(np.ascontiguousarray(arr[i:i + step]).tobytes())
    return h.hexdigest()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


# ---------------------------------------------------------------------------------------------
# assembly
def assemble(store, out_path, dataset: str = "volume", overwrite: bool = False,
             chunk: int = 16, metadata: dict | None = None) -> Path:
    """Write the Zarr volume at ``store`` to ``out_path`` (TIFF, HDF5 or NumPy), atomically.

    :func:`napari_ganrec.io.write_volume` copies the volume ``chunk`` slices at a time into a
    temporary file beside ``out_path``, which then replaces it in one :func:`os.replace`.
    ``metadata`` (the reconstruction's parameters) goes where :func:`napari_ganrec.io.read_volume`
    finds it: the TIFF description, the HDF5 dataset's attribute, and a ``name.ext.json``
    side-car; the store's run parameters go in the HDF5 attribute ``napari_ganrec``.

    Raises
    ------
    FileExistsError
        ``out_path`` exists and ``overwrite`` is False.
    ValueError
        Unknown output suffix, or NaN/inf in the volume.
    """
    import zarr

    out = Path(out_path)
    if out.suffix.lower() not in ASSEMBLE_SUFFIXES:
        raise ValueError(f"out_path must end in one of {', '.join(ASSEMBLE_SUFFIXES)}, got {out}")
    arr = zarr.open_array(str(store), mode="r")
    params = arr.attrs.get(PARAMS_KEY)
    return write_volume(out, arr, metadata, overwrite=overwrite, dataset=dataset, chunk=chunk,
                        attrs=None if params is None else {PARAMS_KEY: json.dumps(params)})


# ---------------------------------------------------------------------------------------------
# the driver
def _prepare_source(source, work: Path, n_slices: int | None, angles) -> SinogramSource:
    src = as_source(source, n_slices=n_slices, angles=angles)
    if isinstance(src, ArraySource) and isinstance(src.array, np.ndarray):
        work.mkdir(parents=True, exist_ok=True)
        digest = _hash_array(src.array)
        path = work / "input.npy"
        sidecar = work / "input.hash"
        if not (path.exists() and sidecar.exists() and sidecar.read_text() == digest):
            def save(tmp):
                with open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(src.array, dtype=np.float32))

            atomic_write(path, save, overwrite=True)
            atomic_write_bytes(sidecar, digest.encode())
        return NpySource(path, angles=src.angles, content_id=f"array:{digest}")
    try:
        pickle.dumps(src)
    except Exception as exc:
        raise ValueError(
            f"the input ({type(source).__name__}) cannot be sent to Dask workers ({exc}); pass a "
            "path, an NpySource, a numpy array or a picklable loader"
        ) from exc
    return src


def run_distributed(
    source,
    out_path,
    angles=None,
    *,
    rows=None,
    slab_size: int = 8,
    method: str = DEFAULT_METHOD,
    iterations: int = 1000,
    warm_iterations: int = 100,
    restart_iterations: int | None = None,
    seed_warm_start: bool = True,
    workers: int | None = None,
    scheduler: Any = None,
    threads_per_worker: int | None = None,
    progress: Callable[[SlabDone], Any] | None = None,
    work_dir=None,
    keep_parts: bool = False,
    overwrite: bool = False,
    dataset: str = "volume",
    n_slices: int | None = None,
    metadata: dict | None = None,
    **volume_kwargs,
) -> Path:
    """Reconstruct a volume slab by slab on Dask workers into a resumable store, then assemble.

    Parameters
    ----------
    source : path, array, loader or SinogramSource
        Sinograms ``(n_slices, n_angles, n_det)``: a path (:func:`napari_ganrec.io.read_tomo`), an
        :class:`~napari_ganrec.volume.NpySource`, a numpy array, or a picklable object with
        ``sinograms(rows=slice)``.
    out_path : path
        Final volume: ``.tif``/``.tiff``, ``.h5``/``.hdf5``/``.nxs`` (dataset ``dataset``),
        ``.npy``, or ``.zarr`` (then the chunked store is the output and nothing is assembled).
    angles : array_like, optional
        Degrees, one per projection (default: the input's own).
    rows : slice or (start, stop), optional
        Slices to reconstruct (default all).
    slab_size : int
        Slices per task (memory per worker is bounded by this, not by the volume).
    method, iterations, warm_iterations
        As in :func:`~napari_ganrec.volume.iter_volume`.
    restart_iterations : int, optional
        Iterations of a task's first slice when it starts from the seed state (default
        ``min(iterations, 2 * warm_iterations)``).
    seed_warm_start : bool
        Reconstruct the first slice once and start every task from its stages' states. When
        False every task starts from scratch (``iterations``) and chains inside its slab.
    workers : int, optional
        Local cluster size (default: one worker per GPU when there are several, else 1). ``0``
        runs the tasks one after the other in this process, without Dask.
    scheduler : str or distributed.Client, optional
        Address of an existing Dask scheduler (or a client) instead of a local cluster.
    threads_per_worker : int, optional
        Torch threads of a CPU task (default: the cores divided among the local workers).
    progress : callable, optional
        Called with a :class:`SlabDone` for every slab finished or skipped.
    work_dir : path, optional
        Where the chunked store, the markers and the seed state live (default
        ``OUT.parts`` beside the output). It is removed after a successful assembly unless
        ``keep_parts``.
    overwrite : bool
        Replace an existing output, and a work folder left by a run with other parameters.
    dataset : str
        HDF5 dataset name of the result.
    metadata : dict, optional
        Parameters recorded with the result (see :func:`assemble`).
    n_slices : int, optional
        For a callable or a loader that does not say how many slices it has.
    **volume_kwargs
        Further options of :func:`~napari_ganrec.volume.iter_volume` (``tol``, ``batch``,
        ``batch_mode``, ``center``, ``device``, ``seed``, stage options...).

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    FileExistsError
        The output exists and ``overwrite`` is False.
    ValueError
        Bad input or options, an unpicklable input, or a work folder from other parameters.
    """
    out = Path(out_path)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"out_path must end in one of {OUTPUT_SUFFIXES}, got {out}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: the folder {out.parent} does not exist; create it first")
    remove_stale_temps(out)  # what a killed assembly left
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".parts")
    is_zarr = out.suffix.lower() == ".zarr"
    resuming_zarr = is_zarr and (work / "params.json").exists()
    if out.exists() and not overwrite and not resuming_zarr:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    if is_zarr and out.exists() and overwrite and not resuming_zarr:
        shutil.rmtree(out)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    if workers is not None and scheduler is not None:
        raise ValueError("give workers or scheduler, not both")
    if isinstance(slab_size, bool) or not isinstance(slab_size, int) or slab_size < 1:
        raise ValueError(f"slab_size must be a positive integer, got {slab_size!r}")
    for bad in ("rows", "warm_start", "state_out", "progress_every", "preview", "first_iterations"):
        if bad in volume_kwargs:
            raise ValueError(f"{bad!r} cannot be passed to run_distributed")
    src = _prepare_source(source, work, n_slices, angles)
    ang = source_angles(src, angles)
    start, stop = validate_rows(rows, src.n_slices)
    # validate the remaining options here, before any worker starts
    check = iter_volume(src, ang, rows=(start, start + 1), method=method, iterations=iterations,
                        warm_iterations=warm_iterations, **volume_kwargs)
    check.close()
    if restart_iterations is None:
        both_int = isinstance(iterations, int) and isinstance(warm_iterations, int)
        restart_iterations = min(iterations, 2 * warm_iterations) if both_int else warm_iterations
    plan = make_plan(method, iterations, {k: v for k, v in volume_kwargs.items() if k not in _NOT_STAGE})
    chain = plan.iterative and seed_warm_start and stop - start > slab_size
    params = _jsonable({
        "version": 1, "source": src.fingerprint(), "angles": np.round(ang, 6).tolist(),
        "rows": [start, stop], "slab_size": slab_size, "method": method,
        "iterations": iterations, "warm_iterations": warm_iterations,
        "restart_iterations": restart_iterations if chain else None, "seed_warm_start": chain,
        # how the device executes (device, acceleration) may change between a run and its resume
        "options": {k: volume_kwargs[k] for k in sorted(volume_kwargs)
                    if k not in ("device", "acceleration")},
    })
    store = out if is_zarr else work / _STORE
    work.mkdir(parents=True, exist_ok=True)
    params_file = work / "params.json"
    if params_file.exists() and json.loads(params_file.read_text()) != params:
        if not overwrite:
            raise ValueError(
                f"{work} holds a run with other parameters or input; pass overwrite=True to start "
                "afresh, or choose another output"
            )
        shutil.rmtree(work / _DONE, ignore_errors=True)
        (work / _SEED).unlink(missing_ok=True)
    open_slice_store(store, (stop - start, src.n_det, src.n_det), params, overwrite)
    atomic_write_bytes(params_file, json.dumps(params).encode())
    (work / _DONE).mkdir(exist_ok=True)

    slabs = slab_ranges(start, stop, slab_size)
    kwargs = dict(volume_kwargs, method=method, iterations=iterations,
                  warm_iterations=warm_iterations)
    total = stop - start
    done = 0

    def report(info: dict):
        nonlocal done
        done += info["stop"] - info["start"]
        if progress is not None:
            progress(SlabDone(info["start"], info["stop"], done, total, info.get("seconds", 0.0),
                              info.get("iterations", 0), info.get("skipped", False),
                              info.get("worker", "")))

    todo = []
    for a, b in slabs:
        if _marker(work, a, b).exists():
            report({"start": a, "stop": b, "skipped": True})
        else:
            todo.append((a, b))

    def spec_for(a, b, threads):
        return {"source": src, "angles": ang, "store": str(store), "offset": start, "start": a,
                "stop": b, "marker": str(_marker(work, a, b)), "volume_kwargs": kwargs,
                "threads": threads, "restart_iterations": restart_iterations}

    seed_spec = None
    if chain and todo:
        seed_spec = {"source": src, "angles": ang, "start": start, "seed_path": str(work / _SEED),
                     "volume_kwargs": {k: v for k, v in kwargs.items()
                                       if k not in ("warm_iterations", "batch", "batch_mode",
                                                    "tol", "window", "min_iterations")},
                     "threads": None}

    if todo and workers == 0:
        seed_path = _seed_task(dict(seed_spec, threads=threads_per_worker)) if seed_spec else None
        for a, b in todo:
            report(_slab_task(spec_for(a, b, threads_per_worker), seed_path))
    elif todo:
        _run_on_dask(todo, spec_for, seed_spec, workers, scheduler, threads_per_worker, report)
    src.close()

    if store != out:
        assemble(store, out, dataset=dataset, overwrite=overwrite, metadata=metadata)
    elif metadata:
        record_metadata(store, metadata)
    if not keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return out
