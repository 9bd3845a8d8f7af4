"""Pore labels: 3-D connected components, a minimum size, an optional watershed split of touching pores."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import _check_volume, _chunk_for, _drain, _scaled, _slabs, _structure


# --------------------------------------------------------------------------------- labelling
def _relabel_min_size(lab: np.ndarray, n: int, min_size: int, chunk: int) -> int:
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= max(1, int(min_size))
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    k = int(keep.sum())
    lut[keep] = np.arange(1, k + 1, dtype=np.int32)
    for z0, z1 in _slabs(lab.shape[0], chunk):
        lab[z0:z1] = lut[lab[z0:z1]]
    return k


def _watershed_gen(lab: np.ndarray, n: int, h: float, min_size: int):
    """Split touching pores: per pore, watershed of the distance map from its h-maxima."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    objects = ndimage.find_objects(lab)
    next_label = n + 1
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        crop = lab[sl]
        obj = crop == i
        if obj.sum() < 2 * max(1, min_size):
            continue
        padded = np.pad(obj, 1)
        dist = ndimage.distance_transform_edt(padded)
        peaks = h_maxima(dist, h) if h > 0 else (dist == dist.max())
        markers, nm = ndimage.label(peaks & padded, structure=_structure(3))
        if nm > 1:
            ws = watershed(-dist, markers, mask=padded)[1:-1, 1:-1, 1:-1]
            sizes = np.bincount(ws[obj], minlength=nm + 1)
            if np.count_nonzero(sizes[1:] >= max(1, min_size)) > 1:
                order = [m for m in range(1, nm + 1) if sizes[m] > 0]
                for j, m in enumerate(order):
                    crop[(ws == m) & obj] = i if j == 0 else next_label
                    if j:
                        next_label += 1
        if i % 64 == 0:
            yield i / max(1, n)
    return next_label - 1


def _label_gen(pores, connectivity, min_size, watershed_split, watershed_h, chunk, labels_buf):
    lab = labels_buf
    n = ndimage.label(pores, structure=_structure(connectivity), output=lab)
    yield 0.4
    n = _relabel_min_size(lab, n, min_size, chunk)
    yield 0.5
    if watershed_split and n:
        n = yield from _scaled(_watershed_gen(lab, n, watershed_h, min_size), 0.5, 0.95)
        n = _relabel_min_size(lab, n, min_size, chunk)
    yield 1.0
    return lab, n


def label_pores(
    pores: np.ndarray,
    *,
    connectivity: int = 1,
    min_size: int = 1,
    watershed: bool = False,
    watershed_h: float = 1.0,
    chunk: int | None = None,
) -> tuple[np.ndarray, int]:
    """3-D connected components of a pore mask, small ones removed, touching ones optionally split.

    Equivalent to ``skimage.measure.label(pores, connectivity=connectivity)`` (same components,
    labels in raster order), computed with ``scipy.ndimage.label`` into an ``int32`` array.

    Parameters
    ----------
    pores : bool array (z, y, x)
    connectivity : int
        1 (faces, default), 2 (edges) or 3 (corners).
    min_size : int
        Components with fewer voxels are removed.
    watershed : bool
        Split touching pores by a watershed of the distance map.
    watershed_h : float
        Minimum depth (voxels of distance) of a maximum to seed its own pore.
    chunk : int, optional
        Slices per slab for the relabelling passes.

    Returns
    -------
    labels : int32 array
        0 outside pores, 1..n sequential.
    n : int
    """
    pores = np.asarray(pores)
    _check_volume(pores, "pores")
    if int(min_size) < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    chunk = _chunk_for(pores.shape, chunk)
    buf = np.empty(pores.shape, dtype=np.int32)
    return _drain(
        _label_gen(
            pores.astype(bool, copy=False),
            connectivity,
            int(min_size),
            watershed,
            float(watershed_h),
            chunk,
            buf,
        )
    )
