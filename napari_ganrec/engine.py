"""The one driver: (data source, rows, geometry, method) -> progress records.

:func:`run` reads the rows slab by slab (``batch`` adjacent slices at a time, the next slab read in
a thread while this one computes), runs the method's stages on each slab
(:func:`~napari_ganrec.methods.iter_chain`) and yields :class:`Progress` records: one ``finished``
record per slab with its final images, and unfinished ones every ``progress_every`` iterations.

Warm start: with ``warm_start=True`` every slab after the first starts each stage from the state
that stage left on the previous slab (the reweighted-TV image, duals and weights; the GANrec
networks and optimisers; the SIRT/TV image) and runs ``warm_plan``'s (shorter) iteration counts;
a state dict ``{stage: state}`` warm-starts the first slab too (with ``first_plan``).

:func:`napari_ganrec.api.iter_reconstruct` (one batch of slices, every iteration),
:func:`napari_ganrec.volume.iter_volume`, the Dask tasks of :mod:`napari_ganrec.distributed` and
the widget's run model all go through here. Nothing here imports Qt or napari.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .geometry import Geometry, circle_mask, validate_sinogram
from .methods import Plan, iter_chain
from .projector import Projector

if TYPE_CHECKING:
    from .volume.sources import SinogramSource

__all__ = ["BATCH_MODES", "Progress", "run"]

BATCH_MODES = ("shared", "independent")


@dataclass
class Progress:
    """A small record yielded by :func:`run`.

    Attributes
    ----------
    slab, n_slabs : int
        0-based number of the slab (group of ``batch`` adjacent slices) and the slabs in the run.
    indices : tuple of int
        Source slice (detector row) indices of this slab.
    positions : tuple of int
        Positions of these slices in the output volume (``indices - rows.start``).
    iteration, iterations : int
        Iterations done on this slab so far (all stages together), and the most it will get.
    stage : str
        The stage running (``"rwtv"``, ``"ganrec"``...); ``stage_iteration`` counts within it.
    losses : dict
        Losses of the last iteration (the stage's own names, e.g. ``misfit`` for reweighted TV,
        ``g_loss``/``d_loss``/``l1``/``adv`` for GANrec, ``residual`` for SIRT/TV; finished records
        add ``residual``, the relative data misfit of the final image).
    images : numpy.ndarray or None
        ``(len(indices), n_det, n_det)`` float32: the finished slices when ``finished`` (or the
        current ones on preview records); ``None`` otherwise.
    residual, uncertainty : numpy.ndarray or None
        Model minus data ``(len(indices), n_angles, n_det)`` when asked for, and the pixel-wise
        spread of the last iterates where the stage averages them, with ``images``.
    finished, converged, warm : bool
        The slab is done; it stopped early on a stalled loss (``tol``); it started from a warm state.
    done, total : int
        Slices finished so far (this slab included when ``finished``) and in the run.
    seconds, elapsed : float
        Seconds spent on this slab so far, and since the run started.
    state : dict or None
        On the run's last finished record when ``keep_state``: every stage's state (CPU).
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
    stage: str = ""
    stage_iteration: int = 0
    residual: np.ndarray | None = field(default=None, repr=False)
    uncertainty: np.ndarray | None = field(default=None, repr=False)
    state: dict | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        """Fraction of the run's slices finished."""
        return self.done / self.total if self.total else 1.0


def _host(state: Mapping[str, Any]) -> dict:
    def cpu(v):
        if torch.is_tensor(v):
            return v.detach().cpu().clone()
        if isinstance(v, dict):
            return {k: cpu(x) for k, x in v.items()}
        if isinstance(v, list):
            return [cpu(x) for x in v]
        return v

    return {name: cpu(s) for name, s in state.items()}


def run(
    source: SinogramSource,
    rows: tuple[int, int],
    geometry: Geometry,
    plan: Plan,
    *,
    device: torch.device,
    seed: int = 0,
    batch: int = 1,
    batch_mode: str = "shared",
    warm_start: bool | Mapping[str, Any] = True,
    warm_plan: Plan | None = None,
    first_plan: Plan | None = None,
    tol: float | None = None,
    window: int = 10,
    min_iterations: int = 0,
    progress_every: int | None = 10,
    preview_every: int | None = None,
    with_residual: bool = False,
    prefetch: bool = True,
    projector: Projector | None = None,
    acceleration=None,
    keep_state: bool = False,
) -> Iterator[Progress]:
    """Reconstruct ``rows`` of ``source`` with ``plan``, yielding :class:`Progress` records.

    Arguments are checked by the callers (:func:`~napari_ganrec.volume.iter_volume`,
    :func:`~napari_ganrec.api.iter_reconstruct`); this is the loop they share.

    Parameters
    ----------
    source : SinogramSource
        Where the sinograms come from (only the slab in hand is read).
    rows : (int, int)
        Source rows ``[start, stop)`` to reconstruct.
    geometry : Geometry
        Angles, detector and centre.
    plan : Plan
        The method: stages, iterations and configs (:func:`~napari_ganrec.methods.make_plan`).
    device : torch.device
        Where to compute.
    warm_start : bool or dict
        Chain slabs (each stage continues from its state on the previous slab); a state dict
        ``{stage: state}`` also warm-starts the first slab.
    warm_plan, first_plan : Plan, optional
        Iterations of warm-started slabs (default ``plan``) and of a first slab started from a
        given state (default ``warm_plan``).
    progress_every, preview_every : int or None
        Yield an unfinished record every this many iterations; put the images in those every this
        many (None: never).
    with_residual : bool
        Put model-minus-data sinograms beside the images.
    keep_state : bool
        Put every stage's final state (CPU) in the last finished record.
    """
    from .threads import configure_threads
    from .volume.sources import slab_ranges

    configure_threads()  # the CPU cores free now, unless the user chose a count (napari_ganrec.threads)
    t0 = time.perf_counter()
    start, stop = rows
    if projector is None or projector.geometry != geometry or projector.device != device:
        projector = Projector(geometry, device=device)
    mask = torch.from_numpy(circle_mask(geometry.n_det)).to(device)
    slabs = slab_ranges(start, stop, batch)
    total = stop - start
    pool = ThreadPoolExecutor(max_workers=1) if prefetch and len(slabs) > 1 else None
    pin = device.type == "cuda"
    warm_plan = warm_plan or plan
    chain = warm_start is not False and warm_start is not None
    state = dict(warm_start) if isinstance(warm_start, Mapping) else None
    first_plan = first_plan or warm_plan

    def load(a, b):
        sino = validate_sinogram(source.read(a, b), name=f"sinograms of slices {a}:{b}")
        t = torch.from_numpy(sino)
        return t.pin_memory() if pin else t

    def to_numpy(x):
        return (x * mask).detach().to("cpu").numpy().astype(np.float32, copy=False)

    done = 0
    pending = pool.submit(load, *slabs[0]) if pool else None
    try:
        for k, (a, b) in enumerate(slabs):
            sino_cpu = pending.result() if pool else load(a, b)
            if pool and k + 1 < len(slabs):
                pending = pool.submit(load, *slabs[k + 1])
            sino = sino_cpu.to(device, non_blocking=pin)
            idx = tuple(range(a, b))
            pos = tuple(i - start for i in idx)
            slab_t0 = time.perf_counter()
            warm = state is not None
            slab_plan = (first_plan if k == 0 else warm_plan) if warm else plan

            def record(step, losses, finished=False, images=None, residual=None, unc=None, _t=slab_t0,
                       _k=k, _idx=idx, _pos=pos, _warm=warm):
                now = time.perf_counter()
                return Progress(_k, len(slabs), _idx, _pos, step.step, step.steps, dict(losses), images,
                                finished, step.converged, _warm, done, total, now - _t, now - t0,  # noqa: B023
                                step.stage.name, step.iteration, residual, unc)

            def pictures(x, stage, diff=None):
                res = unc = None
                if with_residual:
                    with torch.no_grad():
                        if diff is None:
                            diff = projector.forward(x * mask) - sino  # noqa: B023
                        res = diff.cpu().numpy()
                u = stage.uncertainty()
                if u is not None:
                    unc = to_numpy(u)
                return to_numpy(x), res, unc

            steps = iter_chain(slab_plan, projector, sino, seed=seed, acceleration=acceleration,
                               batch_mode=batch_mode, warm_state=state, tol=tol, window=window,
                               min_iterations=min_iterations, host_state=False)
            try:
                for step in steps:
                    if step.finished:
                        x = step.image
                        with torch.no_grad():
                            losses = dict(step.losses)
                            diff = projector.forward(x * mask) - sino
                            losses["residual"] = float(
                                torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(sino).clamp(min=1e-20))
                        images, res, unc = pictures(x, step.stage, diff)  # one forward projection, not two
                        if chain:
                            state = step.states
                        done += b - a
                        rec = record(step, losses, True, images, res, unc)
                        if keep_state and k == len(slabs) - 1:
                            rec.state = _host(step.states)
                        yield rec
                    elif progress_every and step.step % progress_every == 0:
                        images = res = unc = None
                        if preview_every and step.step % preview_every == 0:
                            with torch.no_grad():
                                images, res, unc = pictures(step.stage.image(), step.stage)
                        yield record(step, step.losses, False, images, res, unc)
            finally:
                steps.close()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
