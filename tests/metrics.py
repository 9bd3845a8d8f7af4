"""The project's quality metric (see README): circle-masked SSIM of max-normalised images."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from napari_ganrec.geometry import circle_mask


def ssim(gt: np.ndarray, rec: np.ndarray) -> float:
    g = gt / gt.max()
    r = np.clip(rec / gt.max(), 0, 1)
    _, full = structural_similarity(g, r, data_range=1, full=True)
    return float(full[circle_mask(gt.shape[-1])].mean())
