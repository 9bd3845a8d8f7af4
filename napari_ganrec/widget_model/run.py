"""The model of one interactive reconstruction run, without Qt or napari.

Three parts, after careamics-napari:

- :class:`RunParams`: everything a run needs, captured on the main thread as plain values.
- :func:`run_reconstruction`: the worker's generator. It takes only plain parameters and a numpy
  array the caller owns, drives :func:`napari_ganrec.iter_reconstruct`, and yields small
  :class:`RunUpdate` records. It yields at most every ``tick_interval`` seconds (and whenever a
  preview image is due, at most every ``image_interval`` seconds), so a fast solver cannot flood the
  main thread with signals, yet stop and pause (which act at a yield) answer within a tick.
- :class:`RunState` (:mod:`.state`, re-exported here): an evented record the main thread folds
  updates into (:meth:`RunState.apply`) and widgets observe (``state.events.<field>.connect``).

What a result layer's metadata says is :func:`run_metadata` (:mod:`.metadata`, re-exported here).

The worker never reads widget state, and the main thread never touches the solver.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..methods import DEFAULT_METHOD, LABELS, Plan, make_plan
from .metadata import resolve_device_name, run_metadata
from .state import RunState, eta_seconds, format_seconds


def _method_labels() -> dict[str, str]:
    order = (DEFAULT_METHOD,) + tuple(m for m in LABELS if m != DEFAULT_METHOD)
    return {m: LABELS[m] for m in order}

__all__ = [
    "METHOD_LABELS",
    "RunParams",
    "RunUpdate",
    "RunSummary",
    "RunState",
    "EngineError",
    "run_reconstruction",
    "run_metadata",
    "warm_up",
    "eta_seconds",
    "format_seconds",
]

#: Methods the widget offers, as the engine names them, with their labels (from the registry,
#: :mod:`napari_ganrec.methods`: the recommended method first).
METHOD_LABELS = _method_labels()

TERMINAL = ("finished", "stopped", "failed")


class EngineError(Exception):
    """A ``RuntimeError`` raised by the engine during a run, re-raised under another type.

    Qt thread workers (superqt's ``GeneratorWorker``) take a ``RuntimeError`` out of a generator
    for a sign that the worker was deleted, and end silently: no ``errored``, no ``finished``.
    Torch reports most failures as ``RuntimeError`` (out of memory, divergence, device errors),
    so the run generator converts them; the message keeps the original type's name.
    """


@dataclass(frozen=True)
class RunParams:
    """Plain parameters of one run (no widgets, no layers).

    Parameters
    ----------
    angles : tuple of float
        Projection angles in degrees, one per sinogram row.
    method : str
        A method of :data:`METHOD_LABELS` (or any chain of stages, ``"rwtv+ganrec"``).
    iterations : int
        Iterations of every iterative stage (FBP runs one).
    preview_every : int
        Ask the engine for an image every this many iterations.
    center : float or None
        Centre of rotation in detector pixels (``None``: the detector's middle).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda:N"``.
    seed : int
        Seed of the GANrec networks.
    options : mapping
        Stage options (config fields: flat, or per stage ``{"ganrec": {...}}``) and
        ``acceleration`` (execution options of the GANrec stage).
    residual : bool
        Also stream the model sinogram minus the data.
    uncertainty : bool
        Also stream the pixel-wise spread of the last iterates of the final stage (reweighted TV or
        GANrec: where the data do not pin the image down); averages the last
        ``max(10, iterations // 5)`` iterates unless the stage already averages some.
    volume_slices : int
        Volume mode when > 0: this many slices reconstructed one after another with
        :func:`napari_ganrec.volume.iter_volume` (the first gets ``iterations`` per stage, each later
        one ``warm_iterations`` from the previous slice's states), the live layer filling slice by slice.
    warm_iterations : int
        Iterations of every iterative stage of each later slice in volume mode.
    tick_interval, image_interval : float
        Minimum seconds between two updates, and between two updates that carry an image.
    """

    angles: tuple[float, ...]
    method: str = DEFAULT_METHOD
    iterations: int = 200
    preview_every: int = 10
    center: float | None = None
    device: str = "auto"
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    residual: bool = False
    uncertainty: bool = False
    volume_slices: int = 0
    warm_iterations: int = 100
    tick_interval: float = 0.05
    image_interval: float = 0.05

    def __post_init__(self):
        for name in ("iterations", "preview_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.volume_slices < 0 or self.warm_iterations < 1:
            raise ValueError("volume_slices must be >= 0 and warm_iterations >= 1")
        if self.tick_interval < 0 or self.image_interval < 0:
            raise ValueError("tick_interval and image_interval must be >= 0")
        object.__setattr__(self, "angles", tuple(float(a) for a in self.angles))
        object.__setattr__(self, "options", dict(self.options))
        self.plan  # noqa: B018 - an unknown method or option fails here, on the main thread

    @property
    def plan(self) -> Plan:
        """The stages that will run, with their iterations and configs."""
        opts = {k: v for k, v in self.options.items() if k != "acceleration"}
        return make_plan(self.method, int(self.iterations), opts)

    def with_automatic_options(self, sinograms) -> RunParams:
        """These parameters with every automatic stage option chosen for ``sinograms``, as the CLI
        chooses it: reweighted TV's ``tv_weight``/``eps`` "auto" from the noise of the middle slice
        (:meth:`napari_ganrec.methods.Plan.resolved`), written into ``options`` so that the run
        uses those numbers and the result's metadata records them (and the ``noise`` they came
        from). ``self`` when nothing is automatic.
        """
        data = np.asarray(sinograms)
        middle = data[data.shape[0] // 2] if data.ndim == 3 else data
        plan = self.plan
        resolved = plan.resolved(middle)
        options = dict(self.options)
        changed = False
        for before, after in zip(plan.stages, resolved.stages):
            if after.config is before.config:
                continue
            fields = {f.name: getattr(after.config, f.name) for f in dataclasses.fields(after.config)
                      if getattr(after.config, f.name) != getattr(before.config, f.name)}
            given = options.get(before.name)
            options[before.name] = {**(dict(given) if isinstance(given, Mapping) else {}), **fields}
            changed = True
        return replace(self, options=options) if changed else self

    @property
    def label(self) -> str:
        """What the user reads for the method (``"reweighted TV + GANrec"``)."""
        return self.plan.label

    @property
    def total(self) -> int:
        """Iterations the run will report in all (all stages; summed over slices in volume mode)."""
        plan = self.plan
        if self.volume_slices > 0:
            later = plan.with_iterations(int(self.warm_iterations)).iterations
            return plan.iterations + (int(self.volume_slices) - 1) * later
        return plan.iterations

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`napari_ganrec.iter_reconstruct` (or, in volume mode,
        :func:`volume_steps`)."""
        kw: dict[str, Any] = dict(
            method=self.method,
            iterations=int(self.iterations),
            center=self.center,
            device=self.device,
            seed=int(self.seed),
            preview_every=int(self.preview_every),
            with_residual=bool(self.residual),
        )
        kw.update(self.options)  # stage options and acceleration
        last = self.plan.stages[-1]
        if self.uncertainty and getattr(last.config, "average_last", None) == 0:
            kw[last.name] = dict(kw.get(last.name) or {}, average_last=max(10, last.iterations // 5))
        if self.volume_slices > 0:
            kw["warm_iterations"] = int(self.warm_iterations)
            kw.pop("with_residual")
        return kw


@dataclass(frozen=True)
class RunUpdate:
    """What the worker tells the main thread, every tick or preview.

    Attributes
    ----------
    iteration, total : int
        Last iteration finished, and the number requested.
    losses : tuple of (int, dict)
        ``(iteration, losses)`` of every iteration since the previous update (none are dropped,
        so the loss curve is complete).
    image, residual, uncertainty : numpy.ndarray or None
        The newest preview image (and model-minus-data sinogram, and spread of the last
        iterates) if one is due.
    image_iteration : int
        The iteration ``image`` belongs to (0 when there is no image).
    produced_at : float
        ``time.perf_counter()`` when the engine handed ``image`` over (or this update was made),
        to measure the latency from an iteration to its picture.
    elapsed : float
        Seconds since the run started.
    """

    iteration: int
    total: int
    losses: tuple[tuple[int, dict[str, float]], ...] = ()
    image: np.ndarray | None = None
    residual: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    image_iteration: int = 0
    produced_at: float = 0.0
    elapsed: float = 0.0


@dataclass(frozen=True)
class RunSummary:
    """What the generator returns when the engine is done."""

    iteration: int
    total: int
    elapsed: float
    device: str


def run_reconstruction(
    sinograms: np.ndarray,
    params: RunParams,
    iterate: Callable[..., Iterable] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Generator[RunUpdate, None, RunSummary]:
    """The worker's generator: run the engine and yield throttled :class:`RunUpdate` records.

    Parameters
    ----------
    sinograms : numpy.ndarray
        ``(angles, detector)`` or ``(slices, angles, detector)``, owned by this call (copy it on
        the main thread; the worker reads it without locks).
    params : RunParams
        The run's parameters.
    iterate : callable, optional
        The engine (default :func:`napari_ganrec.iter_reconstruct`); tests pass a fake one.
    clock : callable
        Time source (seconds).

    Yields
    ------
    RunUpdate
        At most one every ``params.tick_interval`` seconds, plus the last step. Closing the
        generator closes the engine's, which frees the solver.

    Returns
    -------
    RunSummary
    """
    if iterate is None:
        if params.volume_slices > 0:
            iterate = volume_steps
        else:
            from ..api import iter_reconstruct as iterate
    start = clock()
    try:
        steps = iterate(sinograms, np.asarray(params.angles), **params.engine_kwargs())
    except RuntimeError as exc:
        raise EngineError(f"{type(exc).__name__}: {exc}") from exc
    total = params.total
    pending_losses: list[tuple[int, Mapping[str, float]]] = []
    pending_image = pending_residual = pending_uncertainty = None
    pending_image_it = 0
    pending_at = 0.0
    last_tick = last_image = -np.inf
    iteration = 0
    try:
        for step in _engine_errors(steps):
            now = clock()
            iteration = int(step.iteration)
            total = int(getattr(step, "iterations", total) or total)
            losses = getattr(step, "losses", None) or {}
            pending_losses.append((iteration, losses))  # read from the device when sent
            img = getattr(step, "image", None)
            if img is not None:
                pending_image = img
                pending_residual = getattr(step, "residual", None)
                pending_uncertainty = getattr(step, "uncertainty", None)
                pending_image_it = iteration
                pending_at = now
            last = iteration >= total
            image_due = pending_image is not None and (
                last or now - last_image >= params.image_interval
            )
            if last or image_due or now - last_tick >= params.tick_interval:
                update = RunUpdate(
                    iteration=iteration,
                    total=total,
                    losses=tuple((i, {k: float(v) for k, v in ls.items()}) for i, ls in pending_losses),
                    image=pending_image if image_due else None,
                    residual=pending_residual if image_due else None,
                    uncertainty=pending_uncertainty if image_due else None,
                    image_iteration=pending_image_it if image_due else 0,
                    produced_at=pending_at if image_due else now,
                    elapsed=now - start,
                )
                pending_losses = []
                if image_due:
                    pending_image = pending_residual = pending_uncertainty = None
                    last_image = now
                last_tick = now
                yield update
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()
    return RunSummary(iteration, total, clock() - start, resolve_device_name(params.device))


@dataclass(frozen=True)
class VolumeStep:
    """A volume-mode step in the shape of :class:`napari_ganrec.api.Step`."""

    iteration: int
    iterations: int
    losses: dict
    image: np.ndarray | None = None
    residual: None = None
    uncertainty: None = None


def volume_steps(sinograms: np.ndarray, angles, *, iterations: int, warm_iterations: int,
                 preview_every: int = 10, **kwargs) -> Generator[VolumeStep, None, None]:
    """Drive :func:`napari_ganrec.volume.iter_volume` and yield :class:`VolumeStep` records.

    The iteration counter runs over the whole volume (first slice ``iterations``, later ones
    ``warm_iterations``); every finished slice puts the volume so far (a fresh array, earlier
    slices filled, later ones 0) into ``image``. Closing the generator stops the run.
    """
    from ..volume import iter_volume

    sinos = np.asarray(sinograms, dtype=np.float32)
    if sinos.ndim == 2:
        sinos = sinos[None]
    n_slices, _, n_det = sinos.shape
    opts = {k: v for k, v in kwargs.items() if k not in ("method", "center", "device", "seed", "acceleration")}
    plan = make_plan(kwargs.get("method", DEFAULT_METHOD), iterations, opts)
    total = plan.iterations + (n_slices - 1) * plan.with_iterations(warm_iterations).iterations
    volume = np.zeros((n_slices, n_det, n_det), np.float32)
    done_before = 0  # iterations of the finished slabs
    gen = iter_volume(sinos, angles, iterations=iterations, warm_iterations=warm_iterations,
                      progress_every=max(1, min(int(preview_every), 10)), **kwargs)
    try:
        for rec in gen:
            it = min(done_before + int(rec.iteration), total)
            image = None
            if rec.finished:
                volume[list(rec.positions)] = rec.images
                done_before += int(rec.iteration)
                image = volume.copy()
                if rec.done == rec.total:
                    it = total  # early-stopped slices leave the count short: the run is complete
            yield VolumeStep(it, total, dict(rec.losses), image)
    finally:
        gen.close()


def _engine_errors(steps: Iterable):
    """Iterate ``steps``, turning a ``RuntimeError`` into an :class:`EngineError`."""
    it = iter(steps)
    while True:
        try:
            step = next(it)
        except StopIteration:
            return
        except RuntimeError as exc:
            raise EngineError(f"{type(exc).__name__}: {exc}") from exc
        yield step


def warm_up(device: str = "auto") -> float:
    """Run the engine once on a tiny problem; returns the seconds it took.

    The first GANrec iteration of a process imports and initialises a lot (torch's autograd
    engine and optimiser machinery pull in large modules), holding the interpreter lock for
    hundreds of milliseconds at a time. Doing that once in the background when the widget opens
    keeps it out of the user's first run, whose thread would otherwise stall the viewer.
    """
    from ..api import iter_reconstruct

    t0 = time.perf_counter()
    sino = np.ones((4, 8), np.float32)
    angles = [0.0, 45.0, 90.0, 135.0]
    for method, options in (("ganrec", {"channels": 8, "n_conv": 3}), ("fbp", {})):
        for _ in iter_reconstruct(sino, angles, method=method, iterations=2, preview_every=1,
                                  device=device, with_residual=True, **options):
            pass
    return time.perf_counter() - t0
