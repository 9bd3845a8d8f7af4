"""The public API: :func:`reconstruct` and :func:`iter_reconstruct` (see DESIGN.md).

``sinogram`` is ``(n_angles, n_det)`` for one slice or ``(n_slices, n_angles, n_det)``, line
integrals (after -log); ``angles`` in degrees, one per row. Results are float32 ``(n_det, n_det)`` or
``(n_slices, n_det, n_det)`` in the sinogram's units per pixel.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .acceleration import Acceleration, resolve_acceleration
from .classical import FILTERS, fbp, sirt_iter, tv_iter
from .ganrec import GANrecConfig, GANrecSolver, SolverState, make_config
from .geometry import Geometry, circle_mask, validate_angles, validate_sinogram
from .projector import Projector, resolve_device
from .threads import configure_threads

__all__ = ["METHODS", "Step", "reconstruct", "iter_reconstruct"]

METHODS = ("ganrec", "fbp", "sirt", "tv")
DEFAULT_TV_WEIGHT = 0.03  # of method="tv": the best weight on the porous phantoms at 0-120 degrees


@dataclass
class Step:
    """One iteration of a running reconstruction.

    Attributes
    ----------
    iteration : int
        1-based iteration just finished.
    iterations : int
        Iterations requested in total.
    losses : dict
        Loss values of this iteration (``g_loss``, ``d_loss``, ``l1``, ``adv`` for GANrec;
        ``residual`` (relative data misfit) for SIRT/TV and on preview steps).
    image : numpy.ndarray or None
        The current reconstruction (the API's output shape) every ``preview_every`` iterations and
        at the last one; ``None`` otherwise.
    elapsed : float
        Seconds since the run started.
    solver : GANrecSolver or None
        The live solver (GANrec only): ``step.solver.state()`` warm-starts another run.
    residual : numpy.ndarray or None
        Model minus measured sinogram on preview steps when ``with_residual`` was asked for.
    uncertainty : numpy.ndarray or None
        GANrec only, on preview steps when the config averages iterates (``average_last > 0``):
        the pixel-wise standard deviation of the last iterates (image units, output shape). High
        where the data leave the image undetermined (e.g. along a missing wedge).
    """

    iteration: int
    iterations: int
    losses: dict[str, float]
    image: np.ndarray | None = None
    elapsed: float = 0.0
    solver: GANrecSolver | None = field(default=None, repr=False)
    residual: np.ndarray | None = field(default=None, repr=False)
    uncertainty: np.ndarray | None = field(default=None, repr=False)


def _check_common(sinogram, angles, iterations, preview_every, method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sino = validate_sinogram(sinogram)
    squeeze = sino.ndim == 2
    if squeeze:
        sino = sino[None]
    ang = validate_angles(angles, n_angles=sino.shape[1])
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if isinstance(preview_every, bool) or not isinstance(preview_every, (int, np.integer)) or preview_every < 1:
        raise ValueError(f"preview_every must be a positive integer, got {preview_every!r}")
    return sino, ang, squeeze


def iter_reconstruct(
    sinogram,
    angles,
    method: str = "ganrec",
    iterations: int = 1000,
    center: float | None = None,
    device: str = "auto",
    seed: int = 0,
    preview_every: int = 10,
    preset: str | GANrecConfig | None = "default",
    warm_start: SolverState | None = None,
    tv_weight: float | None = None,
    filter_name: str = "ramp",
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
    method : {"ganrec", "fbp", "sirt", "tv"}
        Reconstruction method (FBP yields a single step).
    iterations : int
        Number of iterations.
    center : float, optional
        Centre of rotation in detector pixels (default ``n_det / 2``).
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:N"``.
    seed : int
        Seed of the network initialisation (GANrec); CPU runs are reproducible.
    preview_every : int
        Put the current image in every ``preview_every``-th step (and the last).
    preset : str or GANrecConfig
        GANrec configuration preset (``"default"``, ``"paper"``, ``"fast"``) or a config.
    warm_start : SolverState, optional
        GANrec weights of an earlier run (e.g. the previous slice) to start from.
    tv_weight : float, optional
        Dimensionless TV weight: of ``method="tv"`` (default 0.03), and for ``method="ganrec"`` it
        overrides the preset's ``tv_weight`` (the weight of its TV / reweighted-TV prior).
    filter_name : str
        FBP filter (``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hann"``, ``"hamming"``).
    with_residual : bool
        Also put the model-minus-data sinogram in preview steps (``step.residual``).
    projector : Projector, optional
        Reuse a projector built for this geometry and device.
    acceleration : Acceleration or dict, optional
        GANrec execution options: mixed precision, channels-last, ``torch.compile``, how often the
        host reads the losses (:class:`~napari_ganrec.acceleration.Acceleration`; default
        automatic: on CUDA a bfloat16 residual generator, channels-last, fused Adam and losses read
        every 25 iterations; plain float32 on the CPU; ``torch.compile`` only when asked for).
        ``Acceleration.off()`` for none.
    **options
        GANrec options overriding the preset (see :class:`~napari_ganrec.ganrec.GANrecConfig`).

    Yields
    ------
    Step
        Closing the generator (``gen.close()``, or leaving a ``for`` loop) stops the run and
        frees its memory.

    Raises
    ------
    ValueError
        Bad shapes, angle counts, NaN/inf, empty input, non-positive iterations, unknown options.
    """
    sino, ang, squeeze = _check_common(sinogram, angles, iterations, preview_every, method)
    if filter_name not in FILTERS:
        raise ValueError(f"filter_name must be one of {FILTERS}, got {filter_name!r}")
    if method == "ganrec" and tv_weight is not None:
        options["tv_weight"] = tv_weight
    config = make_config(preset, **options) if method == "ganrec" else None
    if method != "ganrec" and options:
        raise ValueError(f"options {sorted(options)} only apply to method='ganrec'")
    geo = Geometry.create(ang, sino.shape[-1], center)
    dev = resolve_device(device)
    resolve_acceleration(acceleration, dev)  # bad options fail here, not in the first step
    return _run(sino, geo, dev, method, int(iterations), int(seed), int(preview_every), config,
                warm_start, DEFAULT_TV_WEIGHT if tv_weight is None else float(tv_weight), filter_name,
                squeeze, with_residual, projector, acceleration)


def _run(sino, geo, dev, method, iterations, seed, preview_every, config, warm_start, tv_weight,
         filter_name, squeeze, with_residual, projector, acceleration) -> Iterator[Step]:
    configure_threads()  # the CPU cores that are free now (napari_ganrec.threads)
    start = time.perf_counter()
    if projector is None or projector.geometry != geo or projector.device != dev:
        projector = Projector(geo, device=dev)
    b = torch.from_numpy(sino).to(dev)
    mask = torch.from_numpy(circle_mask(geo.n_det)).to(dev)

    def to_numpy(x: torch.Tensor) -> np.ndarray:
        out = (x * mask).detach().cpu().numpy().astype(np.float32, copy=False)
        return out[0] if squeeze else out

    def residual_of(x: torch.Tensor) -> np.ndarray | None:
        if not with_residual:
            return None
        with torch.no_grad():
            r = (projector.forward(x * mask) - b).cpu().numpy()
        return r[0] if squeeze else r

    if method == "fbp":
        with torch.no_grad():
            x = fbp(projector, b, filter_name)
        yield Step(1, 1, {}, to_numpy(x), time.perf_counter() - start, None, residual_of(x))
        return
    if method in ("sirt", "tv"):
        it = sirt_iter(projector, b, iterations) if method == "sirt" else tv_iter(
            projector, b, iterations, tv_weight=tv_weight)
        try:
            for k, x, res in it:
                show = k % preview_every == 0 or k == iterations
                yield Step(k, iterations, {"residual": res}, to_numpy(x) if show else None,
                           time.perf_counter() - start, None, residual_of(x) if show else None)
        finally:
            it.close()
        return
    solver = GANrecSolver(projector, b, config, seed=seed, warm_start=warm_start,
                          acceleration=acceleration)
    try:
        for k in range(1, iterations + 1):
            losses = solver.step()
            image = res_np = unc = None
            if k % preview_every == 0 or k == iterations:
                with torch.no_grad():
                    x = solver.image()
                    losses["residual"] = float(
                        torch.linalg.vector_norm(projector.forward(x) - b)
                        / torch.linalg.vector_norm(b).clamp(min=1e-20))
                    if config.average_last:
                        unc = to_numpy(solver.uncertainty())
                image = to_numpy(x)
                res_np = residual_of(x)
            yield Step(k, iterations, losses, image, time.perf_counter() - start, solver, res_np, unc)
    finally:
        solver.close()


def reconstruct(
    sinogram,
    angles,
    method: str = "ganrec",
    iterations: int = 1000,
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

    With ``return_uncertainty=True`` (GANrec only) it returns ``(image, uncertainty)``: the
    pixel-wise standard deviation of the last iterates, same shape and units as the image. When the
    chosen config does not average iterates, the last ``max(10, iterations // 5)`` are used.

    Examples
    --------
    >>> rec = reconstruct(sino, np.linspace(0, 120, 120, endpoint=False), method="tv", iterations=200)
    """
    kwargs.setdefault("preview_every", iterations if isinstance(iterations, int) and iterations > 0 else 1)
    if return_uncertainty:
        if method != "ganrec":
            raise ValueError(f"return_uncertainty needs method='ganrec', got method={method!r}")
        preset = kwargs.get("preset", "default")
        base = make_config(preset) if not isinstance(preset, GANrecConfig) else preset
        if not kwargs.get("average_last", base.average_last):
            n_it = iterations if isinstance(iterations, int) else 0
            kwargs["average_last"] = max(10, n_it // 5)
    last = unc = None
    for step in iter_reconstruct(sinogram, angles, method=method, iterations=iterations,
                                 center=center, device=device, seed=seed, **kwargs):
        if step.image is not None:
            last = step.image
            unc = step.uncertainty
    if return_uncertainty:
        return last, unc
    return last
