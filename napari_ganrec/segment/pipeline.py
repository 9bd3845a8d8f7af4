"""The whole pipeline: :func:`iter_segment` (a generator of progress records) and :func:`segment`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from ._common import (
    DENOISE_METHODS,
    SegmentProgress,
    Threshold,
    _check_volume,
    _chunk_for,
    _read,
    _slabs,
    _staged,
    _structure,
)
from .denoise import _denoise_gen
from .labels import _label_gen
from .mask import _particle_gen
from .table import _table_gen, _voxel_size, pore_size_distribution
from .threshold import _pore_threshold_gen, parse_threshold


# ------------------------------------------------------------------------------------ result
@dataclass
class SegmentationResult:
    """Labels, particle mask, thresholds, the pore table and totals."""

    labels: np.ndarray
    particle_mask: np.ndarray
    table: dict[str, np.ndarray]
    particle_threshold: float
    pore_threshold: float
    particle_volume_voxels: int
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    params: dict = field(default_factory=dict)

    @property
    def pore_count(self) -> int:
        return int(self.table["label"].size)

    @property
    def pore_volume_voxels(self) -> int:
        return int(self.table["volume_voxels"].sum())

    @property
    def porosity(self) -> float:
        """Pore volume / particle volume (particle = solid + every pore)."""
        return self.pore_volume_voxels / max(1, self.particle_volume_voxels)

    @property
    def open_porosity(self) -> float:
        t = self.table
        return int(t["volume_voxels"][t["touches_surface"]].sum()) / max(
            1, self.particle_volume_voxels
        )

    @property
    def closed_porosity(self) -> float:
        return self.porosity - self.open_porosity

    @property
    def voxel_volume(self) -> float:
        return float(np.prod(self.voxel_size))

    def size_distribution(self, bins="auto", weights: str = "count"):
        """Equivalent-diameter histogram (physical units); see :func:`pore_size_distribution`."""
        return pore_size_distribution(self.table["equivalent_diameter"], bins, weights)

    def summary(self) -> dict[str, float]:
        """Totals as a flat dict (porosity in [0, 1])."""
        return {
            "porosity": self.porosity,
            "open_porosity": self.open_porosity,
            "closed_porosity": self.closed_porosity,
            "pore_count": self.pore_count,
            "pore_volume_voxels": self.pore_volume_voxels,
            "particle_volume_voxels": self.particle_volume_voxels,
            "particle_volume": self.particle_volume_voxels * self.voxel_volume,
            "particle_threshold": self.particle_threshold,
            "pore_threshold": self.pore_threshold,
        }


def _validate_options(
    denoise, denoise_strength, closing, min_size, connectivity, watershed_h, bins
):
    if denoise is not None and denoise not in DENOISE_METHODS:
        raise ValueError(f"denoise must be None or one of {DENOISE_METHODS}, got {denoise!r}")
    if denoise_strength is not None and not (
        isinstance(denoise_strength, (int, float)) and denoise_strength > 0
    ):
        raise ValueError(f"denoise_strength must be a positive number, got {denoise_strength!r}")
    if not (isinstance(closing, (int, np.integer)) and closing >= 0):
        raise ValueError(f"closing must be a non-negative integer radius, got {closing!r}")
    if not (isinstance(min_size, (int, np.integer)) and min_size >= 0):
        raise ValueError(f"min_size must be a non-negative integer, got {min_size!r}")
    _structure(connectivity)
    if not (isinstance(watershed_h, (int, float)) and watershed_h >= 0):
        raise ValueError(f"watershed_h must be >= 0, got {watershed_h!r}")
    if not (isinstance(bins, (int, np.integer)) and bins >= 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


def iter_segment(
    volume,
    *,
    denoise: str | None = None,
    denoise_strength: float | None = None,
    particle_threshold: Threshold = "otsu",
    pore_threshold: Threshold = "otsu",
    closing: int = 0,
    min_size: int = 8,
    connectivity: int = 1,
    watershed: bool = False,
    watershed_h: float = 1.0,
    voxel_size=None,
    chunk: int | None = None,
    inplace: bool = False,
    bins: int = 1024,
) -> Generator[SegmentProgress, None, SegmentationResult]:
    """Segment pores in 3-D, yielding :class:`SegmentProgress` records; returns the result.

    Use ``result = yield from iter_segment(...)`` or a napari generator worker (its ``returned``
    signal carries the result); :func:`segment` runs it to the end. Closing the generator stops
    the run between steps.

    Parameters
    ----------
    volume : array (z, y, x)
        Reconstructed volume (numpy array, memmap, zarr or h5py dataset).
    denoise : {None, "gaussian", "median", "nlm"}
        Denoising before thresholding.
    denoise_strength : float, optional
        Sigma (gaussian), window (median) or h / noise sigma (nlm); see :func:`denoise_volume`.
    particle_threshold : "otsu", "li" or float
        Solid phase threshold (automatic: on the whole volume's histogram).
    pore_threshold : "otsu", "li" or float
        Pore threshold (automatic: on the histogram inside the particle mask, values above its
        median clipped). An automatic pore threshold is capped at the particle threshold so that
        the particle's own blurred surface is never counted as pores.
    closing : int
        Radius (voxels) of a closing of the particle mask; open pores narrower than about twice it
        become part of the particle (and count as pores touching the surface).
    min_size : int
        Smallest pore kept, in voxels.
    connectivity : int
        Connectivity of pores (1 faces, 2 edges, 3 corners).
    watershed : bool
        Split touching pores.
    watershed_h : float
        Minimum depth of a distance-map maximum seeding its own pore (voxels).
    voxel_size : float or (z, y, x), optional
        Physical voxel size for the ``volume`` and ``equivalent_diameter`` columns.
    chunk : int, optional
        Slices per slab (default: ~16 MB of float32 per slab).
    inplace : bool
        Denoise into ``volume`` itself (a writable float32 numpy array) instead of a new array.
    bins : int
        Histogram bins for automatic thresholds.
    """
    shape = _check_volume(volume)
    pspec = parse_threshold(particle_threshold, "particle_threshold")
    qspec = parse_threshold(pore_threshold, "pore_threshold")
    _validate_options(denoise, denoise_strength, closing, min_size, connectivity, watershed_h, bins)
    vs = _voxel_size(voxel_size)
    chunk = _chunk_for(shape, chunk)
    params = dict(
        denoise=denoise,
        denoise_strength=denoise_strength,
        particle_threshold=pspec,
        pore_threshold=qspec,
        closing=int(closing),
        min_size=int(min_size),
        connectivity=connectivity,
        watershed=bool(watershed),
        watershed_h=float(watershed_h),
        voxel_size=vs,
    )
    nz = shape[0]
    w0 = 0.0
    if denoise is not None:
        yield SegmentProgress("denoise", 0.0, f"denoising ({denoise})")
        if inplace:
            if not (
                isinstance(volume, np.ndarray)
                and volume.dtype == np.float32
                and volume.flags.writeable
            ):
                raise ValueError("inplace=True needs volume to be a writable float32 numpy array")
            out = volume
        else:
            out = np.empty(shape, dtype=np.float32)
        volume = yield from _staged(
            _denoise_gen(volume, denoise, denoise_strength, chunk, out),
            "denoise",
            0.0,
            0.25,
            f"denoising ({denoise})",
        )
        w0 = 0.25
    span = 1.0 - w0
    buf = np.empty(shape, dtype=np.int32)
    yield SegmentProgress("particle", w0, "particle mask")
    mask, pthr = yield from _staged(
        _particle_gen(volume, pspec, int(closing), 1, chunk, bins, buf),
        "particle",
        w0,
        w0 + 0.35 * span,
        "particle mask",
    )
    lo = w0 + 0.35 * span
    yield SegmentProgress("pores", lo, "pore threshold")
    if isinstance(qspec, str):
        qthr = yield from _staged(
            _pore_threshold_gen(volume, mask, qspec, chunk, bins),
            "pores",
            lo,
            lo + 0.1 * span,
            "pore threshold",
        )
        qthr = min(qthr, pthr)
    else:
        qthr = float(qspec)
        if qthr > pthr:
            warnings.warn(
                f"pore_threshold {qthr:.6g} is above the particle threshold {pthr:.6g}: the "
                "particle's surface layer between them will count as open pores",
                stacklevel=2,
            )
    pores = np.empty(shape, dtype=bool)
    for z0, z1 in _slabs(nz, chunk):
        np.less(_read(volume, z0, z1), qthr, out=pores[z0:z1])
        np.logical_and(pores[z0:z1], mask[z0:z1], out=pores[z0:z1])
    lo += 0.15 * span
    stage = "watershed" if watershed else "pores"
    labels, n = yield from _staged(
        _label_gen(pores, connectivity, int(min_size), watershed, float(watershed_h), chunk, buf),
        stage,
        lo,
        lo + 0.2 * span,
        "labelling pores",
    )
    del pores
    lo += 0.2 * span
    yield SegmentProgress("table", lo, f"measuring {n} pores")
    table = yield from _staged(_table_gen(labels, n, mask, vs), "table", lo, 0.999, "measuring")
    particle_voxels = 0
    for z0, z1 in _slabs(nz, chunk):
        particle_voxels += int(np.count_nonzero(mask[z0:z1]))
    result = SegmentationResult(
        labels=labels,
        particle_mask=mask,
        table=table,
        particle_threshold=float(pthr),
        pore_threshold=float(qthr),
        particle_volume_voxels=particle_voxels,
        voxel_size=vs,
        params=params,
    )
    yield SegmentProgress(
        "done", 1.0, f"{result.pore_count} pores, porosity {100 * result.porosity:.2f} %"
    )
    return result


def segment(
    volume, *, progress: Callable[[SegmentProgress], None] | None = None, **kwargs
) -> SegmentationResult:
    """Run :func:`iter_segment` to the end; ``progress`` is called with each record.

    Examples
    --------
    >>> from napari_ganrec import phantoms, segment
    >>> vol = phantoms.porous_particle(48, nz=48, seed=0).rasterize()
    >>> res = segment.segment(vol)
    >>> round(100 * res.porosity, 1), res.pore_count  # doctest: +SKIP
    """
    gen = iter_segment(volume, **kwargs)
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(rec)
