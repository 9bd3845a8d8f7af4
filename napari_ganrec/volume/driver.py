"""Whole volumes, slice by slice: :func:`iter_volume` and :func:`reconstruct_volume`.

A tomogram is a stack of independent slices (sinograms), but neighbouring slices look alike. As in
Yang et al. (2020), the first slab is reconstructed with the full iteration count and every next
slab starts each stage from the state that stage left on the previous slab, needing only a few
iterations (``warm_iterations``); a stage can also stop early once its loss has stopped falling
(``tol``). Several adjacent slices can go through the device together (``batch``); for GANrec in
one of two ways (``batch_mode``): ``"shared"``, one generator and discriminator over the slab, or
``"independent"``, one pair per slice stacked with :func:`torch.vmap` (:mod:`.stacked`).

The loop itself is :func:`napari_ganrec.engine.run`; this module checks the arguments. Memory is
bounded by the slab, not by the volume: only the slab in hand is read (one slab ahead, in a thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from .. import engine
from ..acceleration import Acceleration, resolve_acceleration
from ..geometry import Geometry, validate_out, validate_seed, validate_weight
from ..methods import DEFAULT_METHOD, Plan, make_plan
from ..projector import Projector, resolve_device
from .sources import as_source, resolve_rows, source_angles

__all__ = ["BATCH_MODES", "DEFAULT_BATCH_MODE", "VolumeProgress", "iter_volume", "reconstruct_volume",
           "check_int"]

BATCH_MODES = engine.BATCH_MODES
DEFAULT_BATCH_MODE = "shared"
VolumeProgress = engine.Progress


def check_int(name, value, minimum):
    """``value`` as an int, or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def iter_volume(
    sinograms,
    angles=None,
    rows=None,
    *,
    method: str | Plan = DEFAULT_METHOD,
    iterations: int | Mapping[str, int] | str = 1000,
    warm_iterations: int | Mapping[str, int] | str | None = 100,
    first_iterations: int | Mapping[str, int] | str | None = None,
    tol: float | None = None,
    window: int = 10,
    min_iterations: int = 0,
    batch: int = 1,
    batch_mode: str = DEFAULT_BATCH_MODE,
    center: float | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    warm_start: bool | Mapping[str, Any] | None = True,
    progress_every: int | None = 10,
    preview: bool = False,
    n_slices: int | None = None,
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
    method : str
        A method of :data:`napari_ganrec.methods.METHODS` or a chain (``"rwtv+ganrec"``).
    iterations : int, dict or str
        Iterations per stage of the first slab and of every slab without warm start
        (:func:`~napari_ganrec.methods.make_plan`).
    warm_iterations : int, dict or str, optional
        Iterations per stage of a slab that starts from the previous slab's states (default 100;
        ``None``: ``iterations``).
    first_iterations : int, dict or str, optional
        Iterations of the first slab when ``warm_start`` is a state (default ``warm_iterations``).
    tol : float, optional
        Early stop: a stage ends once the mean of its watched loss over the last ``window``
        iterations fell by less than ``tol`` (relative) against the ``window`` before.
    window, min_iterations : int
        Early stopping window, and iterations always done (at least ``2 * window``).
    batch : int
        Adjacent slices reconstructed together (one slab) on the device.
    batch_mode : {"shared", "independent"}
        GANrec: one generator over the slab, or one network per slice stacked in one batch.
    center, device, seed
        Rotation centre (detector pixels), ``"auto"``/``"cpu"``/``"cuda:N"``, network seed.
    warm_start : bool or dict
        ``True``: chain slabs; ``False``: every slab from scratch; a state ``{stage: state}`` (from
        ``state_out`` or a :class:`~napari_ganrec.api.Step`'s ``state``): the first slab too.
    progress_every : int, optional
        Also yield an unfinished record every this many iterations (None: only finished slabs).
    preview : bool
        Put the current images in those unfinished records.
    n_slices : int, optional
        Number of slices, for a callable input.
    prefetch : bool
        Read the next slab in a background thread while this one computes.
    projector : Projector, optional
        Reuse a projector built for this geometry and device.
    state_out : list, optional
        When given, the final state of every stage (CPU, ``{stage: state}``) is appended to it.
    acceleration : Acceleration or dict, optional
        Execution options of the network stage (:mod:`~napari_ganrec.acceleration`).
    **options
        Options of the stages (``tv_weight=0.3``, ``filter_name="hann"``, ``ganrec={...}``).

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
    if batch_mode not in BATCH_MODES:
        raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
    seed = validate_seed(seed)
    if "tv_weight" in options:
        options["tv_weight"] = validate_weight(options["tv_weight"])
    plan = make_plan(method, iterations, options)
    batch = check_int("batch", batch, 1)
    window = check_int("window", window, 1)
    min_iterations = check_int("min_iterations", min_iterations, 0)
    if progress_every is not None:
        progress_every = check_int("progress_every", progress_every, 1)
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be None or a non-negative number, got {tol!r}")
    if not isinstance(warm_start, (bool, Mapping)) and warm_start is not None:
        raise ValueError(f"warm_start must be True, False or a state dict, got {type(warm_start).__name__}")
    source = as_source(sinograms, n_slices=n_slices, angles=angles)
    ang = source_angles(source, angles)
    start, stop = resolve_rows(rows, source.n_slices)
    if any(getattr(s.config, "automatic", False) for s in plan.stages):
        middle = (start + stop) // 2  # automatic strength: one setting for the whole range, from its middle
        plan = plan.resolved(source.read(middle, middle + 1))
    warm_plan = plan if warm_iterations is None else plan.with_iterations(warm_iterations)
    first_plan = warm_plan if first_iterations is None else plan.with_iterations(first_iterations)
    geo = Geometry.create(ang, source.n_det, center)
    dev = resolve_device(device)
    resolve_acceleration(acceleration, dev)  # bad options fail here
    return _with_state_out(engine.run(
        source, (start, stop), geo, plan, device=dev, seed=seed, batch=batch, batch_mode=batch_mode,
        warm_start=warm_start, warm_plan=warm_plan, first_plan=first_plan, tol=tol, window=window,
        min_iterations=min_iterations, progress_every=progress_every,
        preview_every=progress_every if preview else None, prefetch=prefetch, projector=projector,
        acceleration=acceleration, keep_state=state_out is not None), state_out)


def _with_state_out(records, state_out):
    try:
        for rec in records:
            if rec.state is not None and state_out is not None:
                state_out.append(rec.state)
            yield rec
    finally:
        records.close()


def reconstruct_volume(
    sinograms,
    angles=None,
    rows=None,
    *,
    out=None,
    progress: Callable[[VolumeProgress], Any] | None = None,
    **kwargs,
) -> np.ndarray:
    """Reconstruct a range of slices in this process and return the volume ``(n_rows, n_det, n_det)``.

    Takes the arguments of :func:`iter_volume`. No Dask, no intermediate store: the slices go
    straight into the result.

    Parameters
    ----------
    out : array-like, optional
        Write the slices into this ``(n_rows, n_det, n_det)`` array (e.g. a memory map or a Zarr
        array) as they finish, and return it: memory stays bounded by the slab.
    progress : callable, optional
        Called with every finished :class:`VolumeProgress` record.

    Examples
    --------
    >>> vol = reconstruct_volume(sinos, angles, method="rwtv", iterations=1000, warm_iterations=100)
    """
    kwargs.setdefault("progress_every", None)
    validate_out(out)
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
                f"got {tuple(result.shape)}")
        result[rec.positions[0]:rec.positions[-1] + 1] = rec.images
        if progress is not None:
            progress(rec)
    return result
