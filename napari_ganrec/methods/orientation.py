"""An adversarial orientation prior (#15, experiment 2): a critic that tells image patches seen
along well-measured directions from patches seen along missing ones.

A slice of an isotropic sample looks alike in every orientation; its reconstruction from a limited
range does not: along the missing wedge edges blur and streak. :func:`orientation_views` turns the
image so that a random measured projection angle lands on the reference angle 0 ("real" views) or a
random missing one does ("fake" views; see :mod:`.wedge` for the angle convention) and cuts random
patches from the central square inside the reconstruction circle. :class:`OrientationCritic` learns
to tell them apart; the image's maker is trained to make them indistinguishable.
"""

from __future__ import annotations

import torch
from torch import nn

from .wedge import Sector, rotate

__all__ = ["OrientationCritic", "orientation_views"]


class OrientationCritic(nn.Module):
    """Patches ``(B, p, p)`` -> one logit each: three stride-2 convolutions, averaged."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * channels, 1, 3, padding=1),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.net(patches.unsqueeze(1)).mean(dim=(1, 2, 3))


def orientation_views(image: torch.Tensor, sector: Sector, patch: int, count: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` real and ``count`` fake patches ``(count * B, patch, patch)`` of ``image`` ``(B, n, n)``.

    Real: the image turned so that a measured projection angle (uniform over the measured range)
    lies at 0; fake: so that a missing one (uniform over ``sector``) does. Differentiable in ``image``.

    Raises
    ------
    ValueError
        When ``patch`` does not fit in the central square of the reconstruction circle.
    """
    bsz, n, _ = image.shape
    side = int(n / 2**0.5) - 2
    if not 4 <= patch <= side:
        raise ValueError(f"orientation patch must be 4 to {side} px for {n} px images, got {patch}")
    reps = image.repeat_interleave(count, dim=0)
    m = reps.shape[0]
    u = torch.rand(2, m, generator=generator)
    measured = (sector.start + sector.width + u[0] * (180.0 - sector.width)) % 180.0
    missing = (sector.start + u[1] * sector.width) % 180.0
    lo = (n - side) // 2
    offs = torch.randint(0, side - patch + 1, (2, m, 2), generator=generator) + lo

    def cut(views: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        return torch.stack([v[int(y):int(y) + patch, int(x):int(x) + patch] for v, (y, x) in zip(views, at)])

    return cut(rotate(reps, measured), offs[0]), cut(rotate(reps, missing), offs[1])
