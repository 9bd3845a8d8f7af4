"""3-D pore segmentation and pore statistics of a reconstructed particle (pure numpy/scipy/skimage).

The pipeline (:func:`iter_segment`, :func:`segment`):

1. optional denoising (Gaussian, median or non-local means), slab by slab;
2. the *particle mask*: voxels at or above the particle threshold, the largest connected component,
   an optional morphological closing, then every cavity it encloses filled in 3-D. Pores are voids
   *inside* this mask, so the air around the particle is never counted as a pore;
3. the *pore threshold* (Otsu, Li or a value) on the values inside the mask; pores are mask voxels
   below it;
4. 3-D connected components, a minimum pore size, an optional watershed split of touching pores;
5. the per-pore table (volume, equivalent diameter, centroid, bounding box, sphericity, whether the
   pore touches the particle surface) and totals (porosity, pore count, size distribution).

Memory: the volume is only read in z-slabs (a ``numpy.memmap``, zarr or h5py array works), never
copied in float64. Whole-volume arrays are one ``bool`` particle mask, one ``bool`` pore mask and
one ``int32`` label array (reused as the scratch buffer of every labelling step), plus one float32
array for the denoised volume only when denoising is asked for and ``inplace`` is false.

Thresholds are histogram based (``bins`` bins over the value range) and are returned as the edge
between two bins: solid is ``value >= threshold``, pore is ``value < threshold``.

Modules, one job each: :mod:`.threshold` (histograms, Otsu/Li, the pore threshold), :mod:`.denoise`,
:mod:`.mask` (the particle mask), :mod:`.labels` (components, watershed), :mod:`.table` (per-pore
table, size distribution), :mod:`.preview` (quick looks for the widget), :mod:`.pipeline`
(:func:`iter_segment`, :func:`segment`) and :mod:`.export` (CSV and label files, written through
:mod:`napari_ganrec.io`). Every public name is re-exported here: ``from napari_ganrec import segment
as sg; sg.segment(...)``.
"""

from __future__ import annotations

from ._common import DENOISE_METHODS, THRESHOLD_METHODS, SegmentProgress, Threshold
from .denoise import denoise_volume, estimate_noise_sigma
from .export import save_labels_tiff, save_table_csv
from .labels import label_pores
from .mask import particle_mask
from .pipeline import SegmentationResult, iter_segment, segment
from .preview import estimate_thresholds, preview_slice
from .table import TABLE_COLUMNS, pore_size_distribution, pore_table
from .threshold import compute_pore_threshold, parse_threshold, threshold_from_histogram, volume_histogram

__all__ = [
    "SegmentProgress",
    "SegmentationResult",
    "THRESHOLD_METHODS",
    "DENOISE_METHODS",
    "TABLE_COLUMNS",
    "Threshold",
    "parse_threshold",
    "volume_histogram",
    "threshold_from_histogram",
    "denoise_volume",
    "estimate_noise_sigma",
    "particle_mask",
    "compute_pore_threshold",
    "label_pores",
    "pore_table",
    "pore_size_distribution",
    "estimate_thresholds",
    "preview_slice",
    "iter_segment",
    "segment",
    "save_table_csv",
    "save_labels_tiff",
]
