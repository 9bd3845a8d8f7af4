"""The per-pore table (volume, diameter, centroid, bounding box, sphericity, surface contact) and size distribution."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ._common import _check_volume, _drain, _structure

# ------------------------------------------------------------------------------------- table
TABLE_COLUMNS = (
    "label",
    "volume_voxels",
    "volume",
    "equivalent_diameter_voxels",
    "equivalent_diameter",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "surface_area",
    "sphericity",
    "touches_surface",
)


def _voxel_size(voxel_size) -> tuple[float, float, float]:
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    vs = np.atleast_1d(np.asarray(voxel_size, dtype=np.float64))
    if vs.size == 1:
        vs = np.repeat(vs, 3)
    if vs.shape != (3,) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(
            f"voxel_size must be a positive number or three (z, y, x), got {voxel_size!r}"
        )
    return tuple(float(v) for v in vs)


def _mesh_area_volume(obj: np.ndarray, spacing) -> tuple[float, float]:
    from skimage.measure import marching_cubes, mesh_surface_area

    padded = np.pad(obj, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    area = float(mesh_surface_area(verts, faces))
    tri = verts[faces]
    vol = float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6)
    return area, vol


def _table_gen(labels, n, mask, voxel_size):
    shape = labels.shape
    vs = _voxel_size(voxel_size)
    voxel_volume = vs[0] * vs[1] * vs[2]
    cols: dict[str, list] = {c: [] for c in TABLE_COLUMNS}
    objects = ndimage.find_objects(labels, max_label=n) if n else []
    struct = _structure(1)
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        starts = [s.start for s in sl]
        stops = [s.stop for s in sl]
        ext = tuple(slice(max(0, a - 1), min(d, b + 1)) for a, b, d in zip(starts, stops, shape))
        obj = labels[ext] == i
        idx = np.nonzero(obj)
        count = idx[0].size
        centroid = [float(idx[k].mean()) + ext[k].start for k in range(3)]
        at_border = any(a == 0 for a in starts) or any(b == d for b, d in zip(stops, shape))
        if at_border:
            touches = True
        else:
            touches = bool(np.any(ndimage.binary_dilation(obj, struct) & ~mask[ext]))
        area, mesh_vol = _mesh_area_volume(obj, vs)
        sph = (math.pi ** (1 / 3)) * (6 * mesh_vol) ** (2 / 3) / area if area > 0 else float("nan")
        vol = count * voxel_volume
        cols["label"].append(i)
        cols["volume_voxels"].append(count)
        cols["volume"].append(vol)
        cols["equivalent_diameter_voxels"].append((6 * count / math.pi) ** (1 / 3))
        cols["equivalent_diameter"].append((6 * vol / math.pi) ** (1 / 3))
        for k, ax in enumerate("zyx"):
            cols[f"centroid_{ax}"].append(centroid[k])
            cols[f"bbox_{ax}0"].append(starts[k])
            cols[f"bbox_{ax}1"].append(stops[k])
        cols["surface_area"].append(area)
        cols["sphericity"].append(sph)
        cols["touches_surface"].append(touches)
        if i % 32 == 0:
            yield i / n
    dtypes = {
        "label": np.int32,
        "volume_voxels": np.int64,
        "touches_surface": bool,
        **{f"bbox_{a}{e}": np.int64 for a in "zyx" for e in "01"},
    }
    return {c: np.asarray(v, dtype=dtypes.get(c, np.float64)) for c, v in cols.items()}


def pore_table(labels: np.ndarray, mask: np.ndarray, voxel_size=None) -> dict[str, np.ndarray]:
    """Per-pore measurements, one row per label ``1..labels.max()`` present.

    Columns (``TABLE_COLUMNS``): ``label``; ``volume_voxels`` and ``volume`` (physical units cubed,
    equal to voxels when ``voxel_size`` is None); ``equivalent_diameter_voxels`` and
    ``equivalent_diameter`` (diameter of the ball of the same volume); ``centroid_z/y/x`` (voxel
    indices); ``bbox_z0 .. bbox_x1`` (half-open index box); ``surface_area`` and ``sphericity``
    (``pi^(1/3) (6 V)^(2/3) / A`` of the marching-cubes surface, 1 for a ball);
    ``touches_surface`` (an *open* pore: next to a voxel outside the particle mask or at the
    volume border).

    Parameters
    ----------
    labels : int array (z, y, x)
    mask : bool array
        The particle mask.
    voxel_size : float or (z, y, x), optional
        Physical voxel size.
    """
    labels = np.asarray(labels)
    _check_volume(labels, "labels")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    if tuple(mask.shape) != tuple(labels.shape):
        raise ValueError(f"mask must have the labels' shape {labels.shape}, got {mask.shape}")
    return _drain(_table_gen(labels, int(labels.max(initial=0)), mask, voxel_size))


def pore_size_distribution(
    diameters: np.ndarray, bins: int | np.ndarray | str = "auto", weights: str = "count"
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of pore diameters.

    Parameters
    ----------
    diameters : array
        Equivalent diameters.
    bins : int, array or str
        As ``numpy.histogram``.
    weights : {"count", "volume"}
        Count pores, or sum their volumes (``pi d^3 / 6``) per bin.

    Returns
    -------
    values, edges : arrays
    """
    d = np.asarray(diameters, dtype=np.float64)
    if weights not in ("count", "volume"):
        raise ValueError(f"weights must be 'count' or 'volume', got {weights!r}")
    w = None if weights == "count" else np.pi * d**3 / 6
    if d.size == 0:
        return np.zeros(1), np.array([0.0, 1.0])
    return np.histogram(d, bins=bins, weights=w)
