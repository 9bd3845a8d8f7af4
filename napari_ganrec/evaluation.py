"""The project's quality metric, used by the demo, the benchmarks and the tests."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .geometry import circle_mask

__all__ = ["ssim", "psnr"]


def _normalised(gt: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt, dtype=np.float64)
    g = gt / gt.max()
    r = np.clip(np.asarray(rec, dtype=np.float64) / gt.max(), 0, 1)
    return g, r


def ssim(gt: np.ndarray, rec: np.ndarray) -> float:
    """SSIM inside the reconstruction circle: ``g = gt/gt.max()``, ``r = clip(rec/gt.max(), 0, 1)``,
    ``structural_similarity(g, r, data_range=1)`` averaged over the circle-masked SSIM map."""
    g, r = _normalised(gt, rec)
    _, full = structural_similarity(g, r, data_range=1, full=True)
    return float(full[circle_mask(g.shape[-1])].mean())


def psnr(gt: np.ndarray, rec: np.ndarray) -> float:
    """PSNR (dB) inside the reconstruction circle on the same normalisation as :func:`ssim`."""
    g, r = _normalised(gt, rec)
    m = circle_mask(g.shape[-1])
    return float(peak_signal_noise_ratio(g[m], r[m], data_range=1))
