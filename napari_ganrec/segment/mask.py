"""The particle mask: solid voxels, the largest component, an optional closing, every enclosed cavity filled."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import Threshold, _check_volume, _chunk_for, _drain, _read, _scaled, _slabs, _structure
from .threshold import _histogram_gen, _value_range, parse_threshold, threshold_from_histogram


# ----------------------------------------------------------------------------- particle mask
def _particle_gen(volume, threshold, closing, connectivity, chunk, bins, labels_buf):
    shape = volume.shape
    nz = shape[0]
    struct = _structure(connectivity)
    thr = threshold
    if isinstance(threshold, str):
        vr = yield from _scaled(_value_range(volume, chunk), 0.0, 0.1)
        if vr[0] == vr[1]:
            raise ValueError(
                f"the volume is constant (every voxel is {vr[0]:.6g}): there is no contrast for an automatic "
                f"particle threshold ({threshold!r}); check that the input is the reconstruction"
            )
        counts, edges = yield from _scaled(_histogram_gen(volume, None, bins, vr, chunk), 0.1, 0.3)
        thr = threshold_from_histogram(counts, edges, threshold)
    thr = float(thr)
    mask = np.empty(shape, dtype=bool)
    for z0, z1 in _slabs(nz, chunk):
        np.greater_equal(_read(volume, z0, z1), thr, out=mask[z0:z1])
        yield 0.3 + 0.1 * z1 / nz
    # largest connected component of the solid phase
    lab = labels_buf
    n = ndimage.label(mask, structure=struct, output=lab)
    yield 0.5
    if n == 0:
        raise ValueError(
            f"no voxel is at or above the particle threshold {thr:.6g}; lower particle_threshold"
        )
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        biggest = int(np.argmax(sizes))
        for z0, z1 in _slabs(nz, chunk):
            np.equal(lab[z0:z1], biggest, out=mask[z0:z1])
    yield 0.6
    if closing:
        mask = yield from _scaled(_closing_gen(mask, int(closing), chunk), 0.6, 0.8)
    # fill every cavity: background not connected to the volume border
    for z0, z1 in _slabs(nz, chunk):
        np.logical_not(mask[z0:z1], out=mask[z0:z1])
    nb = ndimage.label(mask, structure=_structure(1), output=lab)
    border = np.unique(
        np.concatenate(
            [
                lab[0].ravel(),
                lab[-1].ravel(),
                lab[:, 0].ravel(),
                lab[:, -1].ravel(),
                lab[:, :, 0].ravel(),
                lab[:, :, -1].ravel(),
            ]
        )
    )
    outside = np.zeros(nb + 1, dtype=bool)
    outside[border[border > 0]] = True
    yield 0.9
    for z0, z1 in _slabs(nz, chunk):
        np.logical_not(outside[lab[z0:z1]], out=mask[z0:z1])
    yield 1.0
    return mask, thr



def _ball(radius: int) -> np.ndarray:
    r = int(radius)
    g = np.arange(-r, r + 1)
    return (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r


def _closing_gen(mask: np.ndarray, radius: int, chunk: int | None):
    """Binary closing with a ball, slab by slab; the volume border is extended (edge mode)."""
    if radius < 0:
        raise ValueError(f"closing must be a non-negative radius in voxels, got {radius}")
    nz = mask.shape[0]
    halo = 2 * radius
    chunk = _chunk_for(mask.shape, chunk, halo)
    footprint = _ball(radius)
    out = np.empty_like(mask)
    for z0, z1 in _slabs(nz, chunk):
        a0, b1 = max(0, z0 - halo), min(nz, z1 + halo)
        slab = np.pad(mask[a0:b1], halo, mode="edge")
        closed = ndimage.binary_closing(slab, structure=footprint)
        inner = closed[halo:-halo, halo:-halo, halo:-halo]
        out[z0:z1] = inner[z0 - a0 : z0 - a0 + (z1 - z0)]
        yield z1 / nz
    return out


def particle_mask(
    volume,
    threshold: Threshold = "otsu",
    *,
    closing: int = 0,
    connectivity: int = 1,
    chunk: int | None = None,
    bins: int = 1024,
) -> tuple[np.ndarray, float]:
    """The particle: solid phase plus everything it encloses.

    Voxels ``>= threshold`` form the solid phase; its largest connected component is kept, closed
    with a ball of radius ``closing`` voxels (0: no closing) and every cavity not connected to the
    volume border is filled.

    Parameters
    ----------
    volume : array (z, y, x)
    threshold : "otsu", "li" or float
        Particle threshold (automatic ones on the whole volume's histogram).
    closing : int
        Radius of the closing ball in voxels.
    connectivity : int
        1 (faces), 2 (edges) or 3 (corners) for the solid phase's components.
    chunk : int, optional
        Slices per slab.
    bins : int
        Histogram bins for automatic thresholds.

    Returns
    -------
    mask : bool array
    threshold : float
        The threshold used.
    """
    shape = _check_volume(volume)
    spec = parse_threshold(threshold, "threshold")
    chunk = _chunk_for(shape, chunk)
    buf = np.empty(shape, dtype=np.int32)
    return _drain(_particle_gen(volume, spec, closing, connectivity, chunk, bins, buf))
