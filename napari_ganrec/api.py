"""The public API: :func:`reconstruct` and :func:`iter_reconstruct` (see DESIGN.md).

``sinogram`` is ``(n_angles, n_det)`` for one slice or ``(n_slices, n_angles, n_det)``, line
integrals (after -log); ``angles`` in degrees, one per row. Results are float32 ``(n_det, n_det)`` or
``(n_slices, n_det, n_det)`` in the sinogram's units per pixel. Both are thin wrappers of
:func:`napari_ganrec.engine.run` (all slices of the call in one batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import engine
from .acceleration import Acceleration, resolve_acceleration
from .geometry import Geometry, validate_angles, validate_seed, validate_sinogram, validate_weight
from .methods import DEFAULT_METHOD, METHODS, Plan, make_plan
from .projector import Projector, resolve_device
from .volume.sources import ArraySource

__all__ = ["METHODS", "DEFAULT_METHOD", "Step", "reconstruct", "iter_reconstruct"]


@dataclass
class Step:
    """One iteration of a running reconstruction.

    Attributes
    ----------
    iteration : int
        1-based iteration just finished, counted over all stages of the method.
    iterations : int
        Iterations requested in total (all stages).
    losses : dict
        Loss values of this iteration, under the running stage's names (``misfit``/``abs_misfit``
        for reweighted TV; ``g_loss``, ``d_loss``, ``l1``, ``adv`` for GANrec; ``residual`` (relative
        data misfit) for SIRT/TV and on preview steps).
    image : numpy.ndarray or None
        The current reconstruction (the API's output shape) every ``preview_every`` iterations and
        at the last one; ``None`` otherwise.
    elapsed : float
        Seconds since the run started.
    stage : str
        The stage that ran this iteration (``"rwtv"``, ``"ganrec"``...).
    stage_iteration : int
        The iteration within that stage.
    residual : numpy.ndarray or None
        Model minus measured sinogram on preview steps when ``with_residual`` was asked for.
    uncertainty : numpy.ndarray or None
        On preview steps of a stage that averages iterates (``average_last > 0``): the pixel-wise
        standard deviation of the last iterates (image units, output shape).
    state : dict or None
        On the last step: every stage's state (CPU), to warm-start another run (``warm_start=``).
    """

    iteration: int
    iterations: int
    losses: dict[str, float]
    image: np.ndarray | None = None
    elapsed: float = 0.0
    stage: str = ""
    stage_iteration: int = 0
    residual: np.ndarray | None = field(default=None, repr=False)
    uncertainty: np.ndarray | None = field(default=None, repr=False)
    state: dict | None = field(default=None, repr=False)


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def iter_reconstruct(
    sinogram,
    angles,
    method: str | Plan = DEFAULT_METHOD,
    iterations: int | Mapping[str, int] | str = 1000,
    center: float | None = None,
    device: str = "auto",
    seed: int = 0,
    preview_every: int = 10,
    warm_start: Mapping[str, Any] | None = None,
    with_residual: bool = False,
    projector: Projector | None = None,
    acceleration: Acceleration | dict | None = None,
    **options,
) -> Iterator[Step]:
    """Reconstruct step by step, yielding a :class:`Step` after every iteration.

    Parameters
    ----------
    sinogram : array_like
        ``(n_angles, n_det)`` or ``(n_slices, n_angles, n_det)`` line integrals.
    angles : array_like
        Projection angles in degrees, one per sinogram row.
    method : str
        ``"fbp"``, ``"sirt"``, ``"tv"``, ``"rwtv"``, ``"ganrec"`` or a chain such as
        ``"rwtv+ganrec"`` (:mod:`napari_ganrec.methods`); default the recommended one.
    iterations : int, dict or str
        Iterations per stage: ``500`` (every iterative stage), ``{"rwtv": 300, "ganrec": 200}``, or
        ``"rwtv:300+ganrec:200"``. FBP runs one step.
    center : float, optional
        Centre of rotation in detector pixels (default ``n_det / 2``).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:N"``.
    seed : int
        Seed of the network initialisation (GANrec); CPU runs are reproducible.
    preview_every : int
        Put the current image in every ``preview_every``-th step (and the last).
    warm_start : dict, optional
        Every stage's state from an earlier run (the last :class:`Step`'s ``state``).
    with_residual : bool
        Also put the model-minus-data sinogram in preview steps (``step.residual``).
    projector : Projector, optional
        Reuse a projector built for this geometry and device.
    acceleration : Acceleration or dict, optional
        Execution options of the GANrec stage (:class:`~napari_ganrec.acceleration.Acceleration`;
        default automatic per device). ``Acceleration.off()`` for none.
    **options
        Stage options: ``tv_weight=0.3`` (TV, reweighted TV), ``eps=1.0`` (reweighted TV),
        ``filter_name="hann"`` (FBP), ``lr_g=5e-4`` (GANrec), or per stage ``ganrec={...}``.

    Yields
    ------
    Step
        Closing the generator (``gen.close()``, or leaving a ``for`` loop) stops the run and
        frees its memory.

    Raises
    ------
    ValueError
        Bad shapes, angle counts, NaN/inf, empty input, non-positive iterations, unknown methods
        or options.
    """
    seed = validate_seed(seed)
    if "tv_weight" in options:
        options["tv_weight"] = validate_weight(options["tv_weight"])
    plan = make_plan(method, iterations, options)
    preview_every = _positive("preview_every", preview_every)
    sino = validate_sinogram(sinogram)
    squeeze = sino.ndim == 2
    if squeeze:
        sino = sino[None]
    ang = validate_angles(angles, n_angles=sino.shape[1], n_det=sino.shape[-1], tomographic=True)
    if warm_start is not None and not isinstance(warm_start, Mapping):
        raise ValueError(f"warm_start must be a state dict (a Step's state), got {type(warm_start).__name__}")
    geo = Geometry.create(ang, sino.shape[-1], center)
    dev = resolve_device(device)
    resolve_acceleration(acceleration, dev)  # bad options fail here, not in the first step
    records = engine.run(
        ArraySource(sino), (0, sino.shape[0]), geo, plan, device=dev, seed=seed, batch=sino.shape[0],
        warm_start=dict(warm_start) if warm_start else False, first_plan=plan, progress_every=1,
        preview_every=preview_every, with_residual=with_residual, prefetch=False, projector=projector,
        acceleration=acceleration, keep_state=True)
    return _steps(records, squeeze)


def _steps(records, squeeze: bool) -> Iterator[Step]:
    def shape(a):
        return None if a is None else (a[0] if squeeze else a)

    try:
        for rec in records:
            losses = rec.losses
            if rec.images is not None and not rec.finished:
                losses = dict(losses)
            yield Step(rec.iteration, rec.iterations, losses, shape(rec.images), rec.elapsed, rec.stage,
                       rec.stage_iteration, shape(rec.residual), shape(rec.uncertainty), rec.state)
    finally:
        records.close()


def reconstruct(
    sinogram,
    angles,
    method: str | Plan = DEFAULT_METHOD,
    iterations: int | Mapping[str, int] | str = 1000,
    center: float | None = None,
    device: str = "auto",
    seed: int = 0,
    return_uncertainty: bool = False,
    **kwargs,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Reconstruct one slice or a stack of slices.

    Takes the arguments of :func:`iter_reconstruct` and returns the final image: float32
    ``(n_det, n_det)`` for a 2-D sinogram, ``(n_slices, n_det, n_det)`` for a 3-D stack, in the
    sinogram's units per pixel.

    With ``return_uncertainty=True`` it returns ``(image, uncertainty)``: the pixel-wise standard
    deviation of the last iterates of the final stage, same shape and units as the image. That
    stage must average iterates (reweighted TV does by default; GANrec with ``average_last``, which
    this sets to ``max(10, iterations // 5)`` when it is 0).

    Examples
    --------
    >>> rec = reconstruct(sino, np.linspace(0, 120, 120, endpoint=False), method="tv", iterations=200)
    """
    if return_uncertainty:
        plan = make_plan(method, iterations, {k: v for k, v in kwargs.items() if k not in _NOT_OPTIONS})
        last = plan.stages[-1]
        if not hasattr(last.config, "average_last"):
            raise ValueError(f"return_uncertainty needs a final stage that averages iterates (rwtv or "
                             f"ganrec), got method={plan.name!r}")
        if not last.config.average_last:
            cfg = dataclasses.replace(last.config, average_last=max(10, last.iterations // 5))
            plan = Plan(plan.stages[:-1] + (dataclasses.replace(last, config=cfg),))
        method, iterations = plan, None
        kwargs = {k: v for k, v in kwargs.items() if k in _NOT_OPTIONS}
    kwargs.setdefault("preview_every", 10**9)
    last_image = unc = None
    for step in iter_reconstruct(sinogram, angles, method=method, iterations=iterations, center=center,
                                 device=device, seed=seed, **kwargs):
        if step.image is not None:
            last_image, unc = step.image, step.uncertainty
    return (last_image, unc) if return_uncertainty else last_image


_NOT_OPTIONS = ("preview_every", "warm_start", "with_residual", "projector", "acceleration")
