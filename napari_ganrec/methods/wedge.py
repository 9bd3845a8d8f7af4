"""The missing wedge of a limited-angle scan, in pure torch: which Fourier directions the angles
measured, a mask that removes the others, and image rotations that move the mask with the image.

Conventions (the projector's, checked in tests/test_wedgefill.py): an image ``(n, n)`` has rows
``y`` and columns ``x``; a Fourier component of wave vector ``(ky, kx)`` has the orientation
``phi = atan2(ky, kx)`` and is measured by the projection at the angle ``theta = -phi (mod 180)``
degrees. :func:`rotate` turns the image content by ``+alpha`` in that frame (``phi -> phi +
alpha``), so the measured projection angles of the rotated image are ``theta - alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Sector", "missing_sector", "measured_mask", "remove_wedge", "rotate", "fourier_energy"]


@dataclass(frozen=True)
class Sector:
    """Projection angles (degrees, modulo 180) that were not measured: ``(start, start + width)``."""

    start: float
    width: float

    def shifted(self, alpha: float) -> Sector:
        """The sector of an image rotated by ``alpha`` degrees (see :func:`rotate`)."""
        return Sector((self.start - alpha) % 180.0, self.width)


def missing_sector(angles_deg, min_width: float = 5.0) -> Sector | None:
    """The largest gap of the projection angles, modulo 180 degrees, as a :class:`Sector`.

    Every measured angle is taken to cover half the median angular step on each side, so 0-119
    degrees in steps of 1 leave ``(119.5, 179.5)`` unmeasured (60 degrees).

    Parameters
    ----------
    angles_deg : array_like
        Projection angles in degrees (at least two distinct ones modulo 180).
    min_width : float
        Gaps narrower than this (degrees) are no wedge: the result is then None.

    Raises
    ------
    ValueError
        Fewer than two distinct angles modulo 180, non-finite angles, or a negative ``min_width``.
    """
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError("angles_deg must be finite degrees")
    if not min_width >= 0:
        raise ValueError(f"min_width must be >= 0 degrees, got {min_width!r}")
    u = np.unique(np.round(np.mod(a, 180.0), 9))
    if u.size < 2:
        raise ValueError("angles_deg must hold at least two distinct angles modulo 180 degrees")
    gaps = np.diff(np.concatenate([u, [u[0] + 180.0]]))
    step = float(np.median(gaps))
    k = int(np.argmax(gaps))
    width = float(gaps[k]) - step
    if width < min_width:
        return None
    return Sector(float((u[k] + step / 2) % 180.0), width)


def measured_mask(n: int, sector: Sector | None, device=None) -> torch.Tensor:
    """``(n, n)`` float mask in :func:`torch.fft.fft2` layout: 1 where the Fourier direction was
    measured (and at the zero frequency), 0 in the missing ``sector`` (None: all ones)."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if sector is None:
        return torch.ones(n, n, device=device)
    f = torch.fft.fftfreq(n, dtype=torch.float64)
    ky, kx = torch.meshgrid(f, f, indexing="ij")
    theta = torch.rad2deg(-torch.atan2(ky, kx)) % 180.0
    rel = (theta - sector.start) % 180.0
    missing = (rel > 0) & (rel < sector.width)
    missing[0, 0] = False
    # Hermitian symmetry (k and -k together; at even n the Nyquist lines pair up differently), so
    # that the masked transform stays real
    missing |= torch.roll(torch.flip(missing, (0, 1)), (1, 1), (0, 1))
    return (~missing).to(device=device, dtype=torch.float32)


def remove_wedge(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` ``(..., n, n)`` without its Fourier components where ``mask`` is 0 (real result)."""
    return torch.fft.ifft2(torch.fft.fft2(x) * mask).real


def fourier_energy(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``sum |FFT(x)|^2`` over the last two axes (weighted by ``mask``), orthonormal FFT."""
    p = torch.fft.fft2(x, norm="ortho").abs() ** 2
    if mask is not None:
        p = p * mask
    return p.sum(dim=(-2, -1))


def rotate(x: torch.Tensor, alpha_deg: torch.Tensor) -> torch.Tensor:
    """Images ``(B, n, n)`` turned by ``alpha_deg`` ``(B,)`` degrees about the image centre
    (bilinear, zero outside), so that ``phi -> phi + alpha`` (module docstring)."""
    if x.ndim != 3 or alpha_deg.shape != (x.shape[0],):
        raise ValueError(f"rotate needs images (B, n, n) and angles (B,), got {tuple(x.shape)} and "
                         f"{tuple(alpha_deg.shape)}")
    a = torch.deg2rad(alpha_deg.to(x.device, torch.float32))
    c, s = torch.cos(a), torch.sin(a)
    # output pixel p samples the input at R(-alpha) p (normalised (x, y) coordinates)
    theta = torch.stack([torch.stack([c, s, torch.zeros_like(c)], -1),
                         torch.stack([-s, c, torch.zeros_like(c)], -1)], 1)
    grid = F.affine_grid(theta, (x.shape[0], 1, x.shape[1], x.shape[2]), align_corners=False)
    return F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]

