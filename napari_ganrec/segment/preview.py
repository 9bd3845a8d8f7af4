"""Quick looks for the widget: thresholds of a volume and one segmented slice."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ._common import Threshold, _check_volume
from .mask import particle_mask
from .threshold import compute_pore_threshold, parse_threshold


# ----------------------------------------------------------------------------------- preview
def estimate_thresholds(
    volume,
    particle_threshold: Threshold = "otsu",
    pore_threshold: Threshold = "otsu",
    *,
    max_voxels: int = 2_000_000,
    bins: int = 1024,
) -> tuple[float, float]:
    """Particle and pore thresholds as :func:`iter_segment` would use them, fast.

    Automatic thresholds are computed on a strided subsample of at most ``max_voxels`` voxels (the
    whole volume when it is smaller), so a live preview can follow parameter changes.

    Returns
    -------
    (particle_threshold, pore_threshold) : floats
    """
    shape = _check_volume(volume)
    pspec = parse_threshold(particle_threshold, "particle_threshold")
    qspec = parse_threshold(pore_threshold, "pore_threshold")
    step = max(1, int(math.ceil((np.prod(shape, dtype=np.float64) / max_voxels) ** (1 / 3))))
    sub = np.asarray(volume[::step, ::step, ::step], dtype=np.float32)
    if min(sub.shape) < 2:
        sub = np.asarray(volume, dtype=np.float32)
    mask, pthr = particle_mask(sub, pspec, bins=bins)
    if isinstance(qspec, str):
        qthr = min(compute_pore_threshold(sub, mask, qspec, bins=bins), pthr)
    else:
        qthr = float(qspec)
    return float(pthr), float(qthr)


def preview_slice(
    image: np.ndarray, particle_threshold: float, pore_threshold: float
) -> np.ndarray:
    """A 2-D preview of the segmentation of one slice: 0 air, 1 particle, 2 pore.

    The particle is the slice's largest solid component with its holes filled in 2-D (the 3-D
    run fills holes in 3-D, so pores cut by the slice look the same).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    solid = img >= float(particle_threshold)
    out = np.zeros(img.shape, dtype=np.uint8)
    lab, n = ndimage.label(solid)
    if n == 0:
        return out
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    part = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    out[part] = 1
    out[part & (img < float(pore_threshold))] = 2
    return out
