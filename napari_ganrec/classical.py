"""Classical reconstructions on the same projector: FBP, SIRT and TV (Chambolle-Pock).

They serve as the one-second previews in the GUI and as the baselines of every benchmark. All
take a :class:`~napari_ganrec.projector.Projector` and a batch of sinograms ``(B, n_angles, n_det)``
as a torch tensor and return images ``(B, n, n)`` in the sinogram's units per pixel. The iterative
ones are generators yielding ``(iteration, image, data_residual)`` so that callers can stream them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .projector import Projector

__all__ = ["FILTERS", "fbp", "sirt_iter", "tv_iter", "tv_weight_scale", "fourier_filter"]

FILTERS = ("ramp", "shepp-logan", "cosine", "hann", "hamming")


def fourier_filter(size: int, name: str = "ramp") -> np.ndarray:
    """The FBP filter in Fourier space for a padded length ``size`` (as scikit-image builds it).

    The ramp is the Fourier transform of the band-limited spatial ramp (Kak & Slaney), so its
    zero frequency is right; the others multiply it by a window.
    """
    if name not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {name!r}")
    k = np.concatenate((np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)))
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * k) ** 2
    filt = 2.0 * np.real(np.fft.fft(h))
    if name == "ramp":
        pass
    elif name == "shepp-logan":
        omega = np.pi * np.fft.fftfreq(size)[1:]
        filt[1:] *= np.sin(omega) / omega
    elif name == "cosine":
        freq = np.linspace(0, np.pi, size, endpoint=False)
        filt *= np.fft.fftshift(np.sin(freq))
    elif name == "hamming":
        filt *= np.fft.fftshift(np.hamming(size))
    elif name == "hann":
        filt *= np.fft.fftshift(np.hanning(size))
    return filt


def fbp(projector: Projector, sino: torch.Tensor, filter_name: str = "ramp") -> torch.Tensor:
    """Filtered back projection of ``(B, A, D)`` sinograms, weighted by each angle's interval.

    Non-uniform and limited angular ranges are handled by weighting each projection with the
    angular interval it stands for (:meth:`Geometry.angular_weights`).
    """
    geo = projector.geometry
    n = geo.n_det
    size = max(64, int(2 ** np.ceil(np.log2(2 * n))))
    filt = torch.as_tensor(fourier_filter(size, filter_name), dtype=torch.float32, device=sino.device)
    padded = torch.nn.functional.pad(sino, (0, size - n))
    filtered = torch.fft.ifft(torch.fft.fft(padded, dim=-1) * filt, dim=-1).real[..., :n]
    # scikit-image scales by pi / (2 * n_angles) with a filter of twice the ramp: per angle that is
    # half the angular interval, i.e. 0.5 * weight.
    w = torch.as_tensor(0.5 * geo.angular_weights(), dtype=torch.float32, device=sino.device)
    return projector.adjoint(filtered * w.view(1, -1, 1))


def _safe_inverse(t: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(t)
    nz = t > 1e-6
    out[nz] = 1.0 / t[nz]
    return out


def sirt_iter(
    projector: Projector,
    sino: torch.Tensor,
    iterations: int,
    nonnegative: bool = True,
    x0: torch.Tensor | None = None,
) -> Iterator[tuple[int, torch.Tensor, float]]:
    """SIRT (simultaneous iterative reconstruction), optionally non-negative.

    ``x <- x + C A^T R (b - A x)`` with ``R = 1/(A 1)``, ``C = 1/(A^T 1)``. Yields
    ``(iteration, x, relative_residual)`` after every update.
    """
    with torch.no_grad():
        r = _safe_inverse(projector.row_sums())
        c = _safe_inverse(projector.col_sums())
        x = torch.zeros(sino.shape[0], projector.n_det, projector.n_det, device=sino.device)
        if x0 is not None:
            x = x0.clone()
        bnorm = float(torch.linalg.vector_norm(sino)) or 1.0
        for it in range(1, iterations + 1):
            res = sino - projector.forward(x)
            x = x + c * projector.adjoint(r * res)
            if nonnegative:
                x.clamp_(min=0)
            yield it, x, float(torch.linalg.vector_norm(res)) / bnorm


def _grad(x: torch.Tensor) -> torch.Tensor:
    gy = torch.zeros_like(x)
    gx = torch.zeros_like(x)
    gy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    gx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack((gy, gx), dim=1)


def _div(p: torch.Tensor) -> torch.Tensor:
    """Negative adjoint of :func:`_grad`."""
    py, px = p[:, 0], p[:, 1]
    dy = torch.zeros_like(py)
    dx = torch.zeros_like(px)
    dy[..., 0, :] = py[..., 0, :]
    dy[..., 1:-1, :] = py[..., 1:-1, :] - py[..., :-2, :]
    dy[..., -1, :] = -py[..., -2, :]
    dx[..., :, 0] = px[..., :, 0]
    dx[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    dx[..., :, -1] = -px[..., :, -2]
    return dy + dx


def tv_weight_scale(sino: torch.Tensor) -> torch.Tensor:
    """Per-slice scale that makes the TV weight dimensionless: ``mean|b| * n_angles / n_det``.

    Scaling the data by ``s`` scales the best absolute TV weight by ``s``; this keeps a given
    ``tv_weight`` meaningful across data sets, angle counts and sizes.
    """
    b = sino.abs().mean(dim=(-2, -1))
    return b.clamp(min=1e-12) * sino.shape[-2] / sino.shape[-1]


def tv_iter(
    projector: Projector,
    sino: torch.Tensor,
    iterations: int,
    tv_weight: float = 0.01,
    nonnegative: bool = True,
    x0: torch.Tensor | None = None,
) -> Iterator[tuple[int, torch.Tensor, float]]:
    """Total-variation regularised least squares by preconditioned Chambolle-Pock.

    Solves ``min_x 0.5 ||A x - b||^2 + lam ||grad x||_{2,1}`` (``x >= 0`` when ``nonnegative``)
    with ``lam = tv_weight * tv_weight_scale(b)`` and the diagonal preconditioners of Pock and
    Chambolle (2011), so no step size needs tuning. Yields ``(iteration, x, relative_residual)``.
    """
    if tv_weight < 0:
        raise ValueError(f"tv_weight must be >= 0, got {tv_weight}")
    with torch.no_grad():
        bsz = sino.shape[0]
        n = projector.n_det
        lam = (tv_weight * tv_weight_scale(sino)).view(bsz, 1, 1, 1)
        sigma1 = _safe_inverse(projector.row_sums())
        tau = 1.0 / (projector.col_sums() + 4.0)
        sigma2 = 0.5
        x = torch.zeros(bsz, n, n, device=sino.device) if x0 is None else x0.clone()
        xbar = x.clone()
        y1 = torch.zeros_like(sino)
        y2 = torch.zeros(bsz, 2, n, n, device=sino.device)
        bnorm = float(torch.linalg.vector_norm(sino)) or 1.0
        for it in range(1, iterations + 1):
            ax = projector.forward(xbar)
            y1 = (y1 + sigma1 * (ax - sino)) / (1.0 + sigma1)
            y2 = y2 + sigma2 * _grad(xbar)
            norm = torch.sqrt((y2**2).sum(dim=1, keepdim=True))
            y2 = y2 / torch.clamp(norm / lam.clamp(min=1e-30), min=1.0)
            x_new = x - tau * (projector.adjoint(y1) - _div(y2))
            if nonnegative:
                x_new.clamp_(min=0)
            xbar = 2 * x_new - x
            x = x_new
            yield it, x, float(torch.linalg.vector_norm(ax - sino)) / bnorm
