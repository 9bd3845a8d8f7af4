"""Shared pieces of the segmentation modules: progress records, volume checks, z-slabs, generator plumbing."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

THRESHOLD_METHODS = ("otsu", "li")
DENOISE_METHODS = ("gaussian", "median", "nlm")
_DEFAULT_STRENGTH = {"gaussian": 1.0, "median": 3.0, "nlm": 0.8}
_SLAB_VOXELS = 1 << 22  # ~16 MB of float32 per slab by default

Threshold = str | float


# ----------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class SegmentProgress:
    """One progress record of :func:`iter_segment`.

    Attributes
    ----------
    stage : str
        ``"denoise"``, ``"particle"``, ``"pores"``, ``"watershed"``, ``"table"`` or ``"done"``.
    fraction : float
        Overall progress in ``[0, 1]``.
    message : str
        A human readable line.
    """

    stage: str
    fraction: float
    message: str = ""


def _check_volume(volume, name: str = "volume") -> tuple[int, int, int]:
    shape = tuple(getattr(volume, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"{name} must be a 3-D array (z, y, x), got shape {shape}")
    if min(shape) < 2:
        raise ValueError(f"{name} must be at least 2 voxels along each axis, got shape {shape}")
    dtype = np.dtype(getattr(volume, "dtype", np.float32))
    if dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {dtype}")
    return shape  # type: ignore[return-value]


def _chunk_for(shape, chunk: int | None, halo: int = 0) -> int:
    if chunk is None:
        chunk = max(1, _SLAB_VOXELS // max(1, shape[1] * shape[2]))
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of slices, got {chunk}")
    return max(chunk, halo, 1)


def _slabs(nz: int, chunk: int) -> Iterator[tuple[int, int]]:
    for z0 in range(0, nz, chunk):
        yield z0, min(nz, z0 + chunk)


def _read(volume, z0: int, z1: int) -> np.ndarray:
    return np.asarray(volume[z0:z1], dtype=np.float32)


def _drain(gen: Generator):
    """Run a generator to its end and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _staged(gen: Generator, stage: str, lo: float, hi: float, message: str):
    """Map a generator of fractions onto ``SegmentProgress`` records in ``[lo, hi]``."""
    while True:
        try:
            f = next(gen)
        except StopIteration as stop:
            return stop.value
        yield SegmentProgress(stage, lo + (hi - lo) * float(min(max(f, 0.0), 1.0)), message)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    return ndimage.generate_binary_structure(3, connectivity)



def _scaled(gen: Generator, lo: float, hi: float):
    while True:
        try:
            f = next(gen)
        except StopIteration as stop:
            return stop.value
        yield lo + (hi - lo) * f
