"""The live layers of a run, without Qt: their names, shapes, pixel sizes and the run's final status."""

from __future__ import annotations

import numpy as np

from .run import METHOD_LABELS, EngineError

#: metadata key that marks a run's result layers (never offered as an input)
RESULT_KEY = "napari_ganrec_result"


def live_layer_name(source: str, slices: tuple[int, int] | None, method: str) -> str:
    """``"<input> slice 12 GANrec"`` (or ``slices 10-19``; no slice for a single sinogram)."""
    label = METHOD_LABELS.get(method, method)
    if slices is None:
        return f"{source} {label}"
    a, b = slices
    where = f"slice {a}" if b - a == 1 else f"slices {a}-{b - 1}"
    return f"{source} {where} {label}"


def image_shape(sino_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The reconstruction's shape for sinograms of ``sino_shape``: ``(n, n)`` or ``(slices, n, n)``."""
    n_det = int(sino_shape[-1])
    if len(sino_shape) == 2:
        return (n_det, n_det)
    if len(sino_shape) == 3:
        return (int(sino_shape[0]), n_det, n_det)
    raise ValueError(f"sinograms must be (angles, detector) or (slices, angles, detector), got {sino_shape}")


def image_scale(ndim: int, scale: tuple[float, float], slice_scale: float) -> tuple[float, ...]:
    """A result layer's ``scale``: ``slice_scale`` on the slice axis (if any), ``scale`` on rows and columns."""
    return (float(slice_scale),) * (int(ndim) - 2) + tuple(float(s) for s in scale)


def error_text(exc: BaseException) -> str:
    """What the user reads about a failed run: the message of an input or engine error, else the type too."""
    if isinstance(exc, (ValueError, EngineError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def final_status(error: str | None, abort_requested: bool) -> str:
    """``"failed"`` with an error, else ``"stopped"`` when a stop was asked for, else ``"finished"``."""
    if error is not None:
        return "failed"
    return "stopped" if abort_requested else "finished"


def contrast_limits(data, symmetric: bool) -> tuple[float, float]:
    """Contrast limits of a live picture: ``(-m, m)`` around zero (a residual) or ``(0, max)``.

    An all-zero picture gets ``1.0`` as its bound, so the limits are never empty.
    """
    d = np.asarray(data)
    if symmetric:
        lim = float(np.max(np.abs(d))) or 1.0
        return (-lim, lim)
    return (0.0, float(np.max(d)) or 1.0)
