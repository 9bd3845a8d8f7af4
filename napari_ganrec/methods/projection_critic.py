"""An adversary on projections at unmeasured angles (#15, experiment 3).

By the Fourier-slice theorem the missing wedge of a slice is exactly its projections at the angles
the scan did not measure. A fill that is a conditional mean (the MSE of wedge filling) is smooth, so
its projections at those angles lack the sharp edges of the measured ones. A critic on projections
can see that: :class:`ProjectionCritic` learns to tell measured projections ("real") from the
image's own projections at random unmeasured angles ("fake"); the image's maker is trained to make
them alike.

- :func:`missing_angles` spreads projection angles over the missing :class:`~.wedge.Sector` (the
  angle convention of :mod:`.wedge` and of the projector: the sector's angles are projection
  angles ``theta``), at about the measured angular step;
- :func:`angle_projector` is a second projector, the real one's geometry (detector, centre of
  rotation, device, back end) at other angles;
- :func:`projection_windows` cuts ``width`` neighbouring rows at random places of a batch of
  sinograms and scales them so that the scale carries no angle (``"row"``: each row by its own
  maximum; ``"sinogram"``: by a given per-slice scale, e.g. the sinogram's maximum).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..geometry import Geometry
from ..projector import Projector
from .wedge import Sector

__all__ = ["ProjectionCritic", "missing_angles", "angle_projector", "projection_windows", "NORMS", "REALS"]

#: How a projection window is scaled before the critic sees it.
NORMS = ("row", "sinogram")
#: What the critic calls real: the measured sinogram or the image's own projections at measured angles.
REALS = ("data", "image")


class ProjectionCritic(nn.Module):
    """Windows ``(N, width, n_det)`` of neighbouring projections -> one logit each.

    Three 1-D convolutions over the detector (the ``width`` neighbouring angles are the input
    channels, so ``width=1`` is a plain 1-D critic and ``width>1`` a thin 2-D one), two of stride
    2, averaged over the detector.
    """

    def __init__(self, width: int = 1, channels: int = 16):
        super().__init__()
        self.width = int(width)
        self.net = nn.Sequential(
            nn.Conv1d(self.width, channels, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv1d(channels, 2 * channels, 5, stride=2, padding=2), nn.LeakyReLU(0.2),
            nn.Conv1d(2 * channels, 1, 3, padding=1),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.net(windows).mean(dim=(1, 2))


def missing_angles(sector: Sector, step: float) -> np.ndarray:
    """Projection angles (degrees) evenly inside ``sector``, about ``step`` apart, none on its edges.

    The angles are ``start + (i + 1/2) * width / m`` for ``m = max(1, round(width / step))``; they may
    exceed 180 (the sector is read modulo 180, and the projector takes any angle).

    Raises
    ------
    ValueError
        When ``step`` is not a positive finite number of degrees.
    """
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"the angular step must be > 0 degrees, got {step!r}")
    m = max(1, int(round(sector.width / step)))
    return sector.start + (np.arange(m) + 0.5) * sector.width / m


def angle_projector(projector: Projector, angles_deg) -> Projector:
    """A projector with ``projector``'s detector, centre, device and back end at ``angles_deg``."""
    geo = projector.geometry
    return Projector(Geometry.create(np.asarray(angles_deg, dtype=np.float64), geo.n_det, geo.center),
                     device=projector.device, method=projector.method)


def projection_windows(sino: torch.Tensor, width: int, count: int, generator: torch.Generator,
                       norm: str = "row", scale: torch.Tensor | None = None) -> torch.Tensor:
    """``count`` windows per slice of ``width`` neighbouring rows of ``sino`` ``(B, A, n)``, scaled.

    Returns ``(count * B, width, n)``, slice-major, differentiable in ``sino``. ``norm="row"``
    divides each row by its own maximum (angle-independent: a row's scale says nothing about its
    angle); ``"sinogram"`` divides slice ``i`` by ``scale[i]`` (e.g. the measured sinogram's maximum).

    Raises
    ------
    ValueError
        When ``width`` exceeds the rows, ``count < 1``, ``norm`` is unknown, or ``"sinogram"`` has
        no ``scale``.
    """
    bsz, rows, n = sino.shape
    if not 1 <= width <= rows:
        raise ValueError(f"projection width must be 1 to {rows} neighbouring angles here, got {width}")
    if count < 1:
        raise ValueError(f"projection count must be >= 1, got {count}")
    if norm not in NORMS:
        raise ValueError(f"projection norm must be one of {NORMS}, got {norm!r}")
    if norm == "sinogram" and scale is None:
        raise ValueError("projection norm 'sinogram' needs the per-slice scale")
    start = torch.randint(0, rows - width + 1, (bsz, count), generator=generator)
    idx = (start.unsqueeze(-1) + torch.arange(width)).to(sino.device)  # (B, count, width)
    win = torch.gather(sino.unsqueeze(1).expand(bsz, count, rows, n), 2,
                       idx.unsqueeze(-1).expand(bsz, count, width, n))  # (B, count, width, n)
    if norm == "row":
        win = win / win.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
    else:
        win = win / scale.reshape(bsz, 1, 1, 1)
    return win.reshape(bsz * count, width, n)
