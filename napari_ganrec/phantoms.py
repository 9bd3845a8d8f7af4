"""Synthetic porous particles and their sinograms (sample data, tests, benchmarks).

Phantoms are analytic: a list of balls (disks in 2-D) with values that *replace* what lies below
them, painted in order (particle, then pores, then dense inclusions). Coordinates are in pixels of
the reconstruction grid relative to the rotation axis, following DESIGN.md: pixel ``(i, j)`` has its
centre at ``(i - n/2, j - n/2)``.

Sinograms are simulated on a finer grid (odd factor, default 3) with a different projector
(bilinear ray sampling) than the reconstruction's strip-integral matrix, so that no method
reconstructs with the operator that made the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .geometry import Geometry, validate_angles
from .projector import Projector

__all__ = [
    "Ball",
    "Phantom",
    "porous_particle",
    "foam",
    "shepp_logan",
    "simulate_sinogram",
    "simulate_projections",
    "add_poisson_noise",
]


@dataclass(frozen=True)
class Ball:
    """A disk (2-D) or ball (3-D): centre ``(z, y, x)`` in pixels from the axis, radius, value.

    ``kind`` is ``"particle"``, ``"pore"`` or ``"inclusion"``.
    """

    center: tuple[float, float, float]
    radius: float
    value: float
    kind: str = "pore"


@dataclass
class Phantom:
    """An analytic phantom: balls painted in order on an ``n`` (x ``n`` (x ``nz``)) grid."""

    n: int
    balls: list[Ball] = field(default_factory=list)
    nz: int | None = None  # None for a 2-D phantom
    shepp: bool = False

    @property
    def ndim(self) -> int:
        return 2 if self.nz is None else 3

    @property
    def pores(self) -> list[Ball]:
        return [b for b in self.balls if b.kind == "pore"]

    def _paint(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), dtype=np.float32)
        for b in self.balls:
            bz, by, bx = b.center
            inside = (z - bz) ** 2 + (y - by) ** 2 + (x - bx) ** 2 <= b.radius**2
            out[inside] = b.value
        return out

    def rasterize(self, supersample: int = 3, n: int | None = None) -> np.ndarray:
        """Image ``(n, n)`` or volume ``(nz, n, n)`` with each pixel the mean of
        ``supersample**d`` point samples (partial-volume correct)."""
        n = self.n if n is None else n
        f = int(supersample)
        scale = self.n / n
        sub = (np.arange(f) - (f - 1) / 2.0) / f
        yx = (np.arange(n)[:, None] - n / 2.0 + sub[None, :]).ravel() * scale  # (n*f,)
        if self.ndim == 2:
            img = self._paint(np.zeros(1)[:, None, None], yx[None, :, None], yx[None, None, :])[0]
            return img.reshape(n, f, n, f).mean(axis=(1, 3))
        nz = self.nz
        vol = np.empty((nz, n, n), dtype=np.float32)
        for k in range(nz):
            zs = (k - nz / 2.0 + sub) * scale
            sl = self._paint(zs[:, None, None], yx[None, :, None], yx[None, None, :])
            vol[k] = sl.reshape(f, n, f, n, f).mean(axis=(0, 2, 4))
        return vol

    def fine_slice(self, z: float, factor: int) -> np.ndarray:
        """The slice at height ``z`` on the fine simulation grid ``N = factor*n + factor - 1``."""
        f = int(factor)
        big = f * self.n + f - 1
        c = (np.arange(big) - big / 2.0) / f
        if self.shepp:
            from skimage.data import shepp_logan_phantom
            from skimage.transform import resize

            img = resize(shepp_logan_phantom(), (f * self.n, f * self.n), anti_aliasing=True)
            out = np.zeros((big, big), dtype=np.float32)
            pad = (f - 1) // 2
            out[pad : pad + f * self.n, pad : pad + f * self.n] = img
            return out
        return self._paint(np.full((1, 1), float(z)), c[:, None], c[None, :])


def _place(rng, balls, r, rmax_center, gap, tries=2000, dims=2):
    for _ in range(tries):
        pos = rng.uniform(-rmax_center, rmax_center, size=3)
        if dims == 2:
            pos[0] = 0.0
        if np.linalg.norm(pos) > rmax_center:
            continue
        ok = all(
            np.linalg.norm(pos - np.asarray(b.center)) > r + b.radius + gap
            for b in balls
            if b.kind != "particle"
        )
        if ok:
            return tuple(float(p) for p in pos)
    return None


def porous_particle(
    n: int = 128,
    nz: int | None = None,
    n_pores: int = 30,
    n_inclusions: int = 4,
    seed: int = 0,
    particle_radius: float = 0.40,
    pore_radius: tuple[float, float] = (0.012, 0.07),
    value: float = 1.0,
    inclusion_value: float = 2.0,
    gap: float = 2.0,
) -> Phantom:
    """A particle with round pores of many sizes and a few dense inclusions.

    Parameters
    ----------
    n : int
        Image size in pixels (the particle radius and pore radii are fractions of it).
    nz : int, optional
        Number of slices for a 3-D phantom (balls instead of disks); ``None`` for 2-D.
    n_pores, n_inclusions : int
        Counts. Pores never touch each other nor the particle surface (``gap`` pixels apart), so
        each is one closed pore.
    seed : int
        Random seed.
    particle_radius : float
        Particle radius as a fraction of ``n``.
    pore_radius : (float, float)
        Smallest and largest pore radius as fractions of ``n`` (log-uniform); at least 1.5 px.
    value, inclusion_value : float
        Attenuation per pixel of the solid and of the inclusions (pores are 0).
    """
    if n < 8:
        raise ValueError(f"n must be at least 8 pixels, got {n}")
    rng = np.random.default_rng(seed)
    rp = particle_radius * n
    dims = 2 if nz is None else 3
    balls = [Ball((0.0, 0.0, 0.0), rp, value, "particle")]
    lo, hi = (max(1.5, pore_radius[0] * n), max(2.0, pore_radius[1] * n))
    radii = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n_pores))
    for r in sorted(radii, reverse=True):
        pos = _place(rng, balls, r, rp - r - gap, gap, dims=dims)
        if pos is not None:
            balls.append(Ball(pos, float(r), 0.0, "pore"))
    for _ in range(n_inclusions):
        r = float(rng.uniform(1.5, max(2.0, 0.03 * n)))
        pos = _place(rng, balls, r, rp - r - gap, gap, dims=dims)
        if pos is not None:
            balls.append(Ball(pos, r, inclusion_value, "inclusion"))
    return Phantom(n=n, balls=balls, nz=nz)


def foam(n: int = 128, n_pores: int = 60, seed: int = 1, nz: int | None = None) -> Phantom:
    """A foam: a disk whose pores overlap freely (a family the benchmarks do not tune on)."""
    rng = np.random.default_rng(seed)
    rp = 0.42 * n
    balls = [Ball((0.0, 0.0, 0.0), rp, 1.0, "particle")]
    for _ in range(n_pores):
        r = float(rng.uniform(0.02, 0.08) * n)
        while True:
            pos = rng.uniform(-rp, rp, size=3)
            if nz is None:
                pos[0] = 0.0
            if np.linalg.norm(pos) < rp - r * 0.5:
                break
        balls.append(Ball(tuple(float(p) for p in pos), r, 0.0, "pore"))
    return Phantom(n=n, balls=balls, nz=nz)


def shepp_logan(n: int = 128) -> Phantom:
    """The Shepp-Logan head phantom (2-D, from scikit-image) on an ``n x n`` grid."""
    return Phantom(n=n, balls=[], nz=None, shepp=True)


def _shepp_rasterize(n: int) -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)


def ground_truth(phantom: Phantom, supersample: int = 3) -> np.ndarray:
    """The phantom on its reconstruction grid (partial-volume averaged)."""
    if phantom.shepp:
        return _shepp_rasterize(phantom.n)
    return phantom.rasterize(supersample=supersample)


def simulate_sinogram(
    phantom: Phantom,
    angles,
    factor: int = 3,
    center: float | None = None,
    z: float = 0.0,
) -> np.ndarray:
    """Line integrals ``(n_angles, n)`` of a phantom slice, simulated on a ``factor`` finer grid.

    The fine image is ``N = factor*n + factor - 1`` pixels so that, for odd ``factor``, each
    coarse pixel and detector bin is exactly ``factor`` fine ones and the rotation centre sits on
    a fine pixel centre. Values are in the reconstruction grid's units (one pixel is one unit).
    """
    a = validate_angles(angles)
    f = int(factor)
    if f < 1 or f % 2 == 0:
        raise ValueError(f"factor must be a positive odd integer, got {factor}")
    n = phantom.n
    c = n / 2.0 if center is None else float(center)
    big = f * n + f - 1
    fine = phantom.fine_slice(z, f)
    geo = Geometry(tuple(a), big, f * c + (f - 1) / 2.0)
    proj = Projector(geo, device="cpu", method="rotate")
    with torch.no_grad():
        s = proj.forward(torch.from_numpy(np.ascontiguousarray(fine, dtype=np.float32))).numpy()
    return (s[:, : f * n].reshape(a.size, n, f).mean(axis=-1) / f).astype(np.float32)


def simulate_projections(phantom: Phantom, angles, factor: int = 3) -> np.ndarray:
    """Projection stack ``(n_angles, nz, n)`` of a 3-D phantom (rows are slices).

    Each row is the average of ``factor`` fine slices through its height, so rows match the
    partial-volume ground truth of :meth:`Phantom.rasterize`.
    """
    if phantom.ndim != 3:
        raise ValueError("simulate_projections needs a 3-D phantom (nz given)")
    a = validate_angles(angles)
    f = int(factor)
    nz, n = phantom.nz, phantom.n
    out = np.zeros((a.size, nz, n), dtype=np.float32)
    sub = (np.arange(f) - (f - 1) / 2.0) / f
    for k in range(nz):
        zc = k - nz / 2.0
        if not any(abs(zc - b.center[0]) <= b.radius + 1 for b in phantom.balls):
            continue
        out[:, k, :] = np.mean([simulate_sinogram(phantom, a, f, z=zc + s) for s in sub], axis=0)
    return out


def add_poisson_noise(
    sinogram: np.ndarray,
    photons: float = 1e4,
    max_attenuation: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """Poisson (photon counting) noise on line integrals.

    The data are scaled so the most attenuating ray transmits ``exp(-max_attenuation)``, counts
    are drawn with ``photons`` incident per detector pixel, and the noisy log-data are scaled back
    to the input's units.
    """
    s = np.asarray(sinogram, dtype=np.float64)
    if photons <= 0:
        raise ValueError(f"photons must be positive, got {photons}")
    rng = np.random.default_rng(seed)
    k = max_attenuation / max(float(s.max()), 1e-12)
    counts = rng.poisson(photons * np.exp(-k * s))
    noisy = -np.log(np.maximum(counts, 0.5) / photons) / k
    return noisy.astype(np.float32)
