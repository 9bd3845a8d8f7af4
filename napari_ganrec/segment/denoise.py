"""Denoising before thresholding (Gaussian, median, non-local means), slab by slab with a halo."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ._common import _DEFAULT_STRENGTH, DENOISE_METHODS, _check_volume, _chunk_for, _drain, _read, _slabs


# --------------------------------------------------------------------------------- denoising
def estimate_noise_sigma(volume: np.ndarray) -> float:
    """Robust estimate of white-noise sigma: MAD of neighbour differences along x / (0.6745 sqrt 2).

    Needs no PyWavelets (which ``skimage.restoration.estimate_sigma`` does); edges are rare enough
    in a particle volume for the median to ignore them.
    """
    a = np.asarray(volume, dtype=np.float32)
    d = np.diff(a, axis=-1).ravel()
    if d.size == 0:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) / (0.6745 * math.sqrt(2.0)))


def _denoise_setup(method: str, strength: float | None, volume, chunk):
    if method not in DENOISE_METHODS:
        raise ValueError(f"denoise must be None or one of {DENOISE_METHODS}, got {method!r}")
    s = _DEFAULT_STRENGTH[method] if strength is None else float(strength)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"denoise_strength must be a positive number, got {strength!r}")
    if method == "gaussian":
        halo = int(4.0 * s + 0.5)

        def f(a):
            return ndimage.gaussian_filter(a, sigma=s, mode="reflect", truncate=4.0)

    elif method == "median":
        size = int(round(s))
        if size < 2:
            raise ValueError(f"denoise_strength (median size) must be at least 2, got {strength}")
        halo = size // 2 + 1

        def f(a):
            return ndimage.median_filter(a, size=size, mode="reflect")

    else:  # nlm
        from skimage.restoration import denoise_nl_means

        patch, dist = 3, 3
        halo = patch // 2 + dist + 1
        nz = volume.shape[0]
        mid = _read(volume, max(0, nz // 2 - 2), min(nz, nz // 2 + 2))
        sigma = estimate_noise_sigma(mid)
        h = s * sigma if sigma > 0 else s * 1e-3

        def f(a):
            return denoise_nl_means(
                a,
                patch_size=patch,
                patch_distance=dist,
                h=h,
                sigma=sigma,
                fast_mode=True,
                channel_axis=None,
            ).astype(np.float32, copy=False)

    return f, halo


def _denoise_gen(volume, method, strength, chunk, out):
    shape = volume.shape
    nz = shape[0]
    f, halo = _denoise_setup(method, strength, volume, chunk)
    chunk = _chunk_for(shape, chunk, halo)
    inplace = out is volume
    saved = None  # original values of the slices just before the current slab (in place only)
    for z0, z1 in _slabs(nz, chunk):
        a0, b1 = max(0, z0 - halo), min(nz, z1 + halo)
        slab = np.array(volume[a0:b1], dtype=np.float32, copy=True)
        if inplace and saved is not None and z0 > a0:
            slab[: z0 - a0] = saved[-(z0 - a0) :]
        res = np.asarray(f(slab), dtype=np.float32)
        if inplace:
            saved = np.array(volume[max(0, z1 - halo) : z1], dtype=np.float32, copy=True)
        out[z0:z1] = res[z0 - a0 : z0 - a0 + (z1 - z0)]
        yield z1 / nz
    return out


def denoise_volume(
    volume,
    method: str = "gaussian",
    strength: float | None = None,
    *,
    chunk: int | None = None,
    out=None,
    inplace: bool = False,
) -> np.ndarray:
    """Denoise a volume slab by slab (with overlapping halos, so slabs join seamlessly).

    Parameters
    ----------
    volume : array (z, y, x)
    method : {"gaussian", "median", "nlm"}
        Gaussian filter (``strength`` = sigma in voxels, default 1), median filter (``strength`` =
        window size, default 3) or non-local means (``strength`` = h in units of the estimated
        noise sigma, default 0.8; patch 3, search distance 3).
    strength : float, optional
    chunk : int, optional
        Slices per slab (at least the filter's halo).
    out : array, optional
        Where to write the float32 result (e.g. a memmap); a new array by default.
    inplace : bool
        Write into ``volume`` itself (it must be a writable float32 numpy array).

    Returns
    -------
    numpy.ndarray
        float32 denoised volume (``out`` or ``volume`` when given/in place).
    """
    shape = _check_volume(volume)
    if inplace:
        if not (
            isinstance(volume, np.ndarray) and volume.dtype == np.float32 and volume.flags.writeable
        ):
            raise ValueError("inplace=True needs volume to be a writable float32 numpy array")
        out = volume
    elif out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have the volume's shape {shape}, got {tuple(out.shape)}")
    return _drain(_denoise_gen(volume, method, strength, chunk, out))
