"""Whole volumes: sources (lazy reads), stacked GANrec batches, and the slab-by-slab driver.

- :mod:`.sources`: where the sinograms of a slice range come from;
- :mod:`.stacked`: GANrec with one network per slice in one batch;
- :mod:`.driver`: :func:`iter_volume` / :func:`reconstruct_volume` (warm start across slices),
  thin wrappers of :func:`napari_ganrec.engine.run`;
- :mod:`.wedgefill3d`: :func:`wedgefill_volume`, 3-D wedge filling of a first stage's volume.
"""

from .driver import (
    BATCH_MODES,
    DEFAULT_BATCH_MODE,
    VolumeProgress,
    iter_volume,
    reconstruct_volume,
)
from .sources import (
    ArraySource,
    CallableSource,
    LoaderSource,
    NpySource,
    PathSource,
    SinogramSource,
    _resolve_rows,
    as_source,
    resolve_rows,
    slab_ranges,
    source_angles,
)
from .wedgefill3d import WedgeFill3DConfig, wedgefill_volume

__all__ = [
    "BATCH_MODES",
    "DEFAULT_BATCH_MODE",
    "VolumeProgress",
    "SinogramSource",
    "ArraySource",
    "NpySource",
    "LoaderSource",
    "PathSource",
    "CallableSource",
    "as_source",
    "resolve_rows",
    "source_angles",
    "slab_ranges",
    "iter_volume",
    "reconstruct_volume",
    "_resolve_rows",
    "WedgeFill3DConfig",
    "wedgefill_volume",
]
