"""3-D wedge filling: one network for all slices, trained on planes that contain the rotation axis.

Parallel beam: the slices (planes perpendicular to the rotation axis ``z``) all miss the same
in-plane Fourier directions (the wedge, :func:`~napari_ganrec.methods.wedge.missing_sector`), for
every ``kz``. A plane spanned by ``z`` and an in-plane direction ``u`` is cut by the wedge in
another way than a slice: its own wedge-free direction ``z`` lies in the data. So (IsoNet style,
Liu et al. 2022, turning the fully sampled axis into the slice plane):

1. the first stage's volume (e.g. reweighted TV per slice) is cut into the ``(u, z)`` planes of
   ``directions`` measured directions ``u`` (:func:`axial_planes`: its slices turned so that ``u``
   is the column axis, then the ``z`` axis made the row axis); a stack of these planes is the same
   volume turned by 90 degrees about ``u``;
2. every plane is degraded as a slice is: projected at the slices' measured angles and
   reconstructed with reweighted TV (``pool_iterations``), so the input has the first stage's own
   artefacts, now in the plane's frame;
3. a 2-D :class:`~napari_ganrec.methods.wedgefill.WedgeNet` learns to map the degraded planes back
   to the planes; the loss is the Fourier MSE over ``batch`` adjacent planes, 3-D, counted only
   where the *planes* hold data (:func:`plane_mask`: the volume's measured directions, turned with
   it), so the target's own wedge, the first stage's guess, is never learned;
4. the one network is applied to every slice of the volume. A data term ``data_weight * 0.5
   mean((A x - b)/max|b|)^2`` of ``data_batch`` random slices against the real sinograms joins
   the loss (``keep_measured``: the slices keep their measured directions and take only the
   wedge from the network). The weights are averaged over about the last ``average_last`` iterations. With
   ``rounds > 1`` the result becomes the next round's volume (new planes, the same network).

A plane's 2-D Fourier transform is the 3-D one summed along the plane's normal, so a single plane
is not wedge-free; the sum of the planes along the normal (the projection at ``u``'s angle, i.e.
the radiograph) is. That is why the loss is 3-D over adjacent planes and masked (tested in
tests/test_wedgefill3d.py). The planes are ``n x n``: the volume must have at least ``n`` slices
(a taller one gives each direction a random window of ``n`` slices). Measured: docs/experiments.md (issue 15, 3-D).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..geometry import Geometry, circle_mask
from ..methods.base import StageConfig, check_fields
from ..methods.rwtv import AUTO, RWTV, RWTVConfig, auto_or_number, with_automatic_strength
from ..methods.wedge import Sector, measured_mask, missing_sector, remove_wedge, rotate
from ..methods.wedgefill import WedgeNet, dilations
from ..projector import Projector, resolve_device

__all__ = ["WedgeFill3DConfig", "wedgefill_volume", "axial_planes", "plane_mask", "plane_directions", "LABEL"]

#: The stage's honest name in tables and metadata.
LABEL = "3-D wedge filling"


@dataclass(frozen=True)
class WedgeFill3DConfig(StageConfig):
    """Options of :func:`wedgefill_volume`.

    Attributes
    ----------
    directions : int
        Measured in-plane directions ``u`` whose ``(u, z)`` planes train the network (each gives
        ``n`` planes), evenly spread over the measured angles with a seeded offset.
    iterations : int
        Training iterations per round (at 64^3 the SSIM still rose from 1000 to 2000).
    batch : int
        Adjacent planes per training step (the 3-D Fourier loss runs over them).
    data_batch : int
        Slices of the volume per step in the data term (0: no data term).
    data_weight : float
        Weight of the data term.
    lr : float
        Adam learning rate.
    rounds : int
        Rounds; each after the first starts from the previous result (new planes, same network).
    pool_iterations, tv_weight, eps : int, float or "auto", float or "auto"
        The reweighted-TV run that reconstructs each plane from its projections (use the first
        stage's setting, so that the network learns to undo exactly its artefacts).
        ``"auto"`` (the default): what reweighted TV's ``"auto"`` chooses for the middle slice's
        sinogram (:meth:`resolved`), i.e. the setting of a first stage run with its defaults.
    channels, depth : int
        The network (:class:`~napari_ganrec.methods.wedgefill.WedgeNet`).
    average_last : int
        The result uses the network's weights averaged over about this many last iterations
        (0: the last weights).
    keep_measured : bool
        Every slice keeps the first volume's measured Fourier directions and takes only its
        missing wedge from the network.
    min_wedge_deg : float
        Angular gaps narrower than this (degrees) are no missing wedge.
    """

    directions: int = 8
    iterations: int = 2000
    batch: int = 8
    data_batch: int = 4
    data_weight: float = 1.0
    lr: float = 1e-3
    rounds: int = 1
    pool_iterations: int = 300
    tv_weight: float | str = AUTO
    eps: float | str = AUTO
    channels: int = 16
    depth: int = 4
    average_last: int = 50
    keep_measured: bool = False
    min_wedge_deg: float = 5.0

    def __post_init__(self):
        for name, positive in (("tv_weight", False), ("eps", True)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, auto_or_number(value, name, positive, "WedgeFill3DConfig"))
            except ValueError:
                raise ValueError(f"WedgeFill3DConfig.{name} is out of range: {value!r} "
                                 "('auto' or a finite number)") from None

        def whole(v, lo):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo

        def real(v, lo, strict=False):
            ok = isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(v)
            return ok and (v > lo if strict else v >= lo)

        check_fields(self, {
            "directions": whole(self.directions, 1),
            "iterations": whole(self.iterations, 1),
            "batch": whole(self.batch, 1),
            "data_batch": whole(self.data_batch, 0),
            "data_weight": real(self.data_weight, 0),
            "lr": real(self.lr, 0, strict=True),
            "rounds": whole(self.rounds, 1),
            "pool_iterations": whole(self.pool_iterations, 1),
            "channels": whole(self.channels, 1),
            "depth": whole(self.depth, 1) and self.depth <= 8,
            "average_last": whole(self.average_last, 0),
            "keep_measured": isinstance(self.keep_measured, (bool, np.bool_)),
            "min_wedge_deg": real(self.min_wedge_deg, 0) and self.min_wedge_deg < 180,
        })


    def resolved(self, sinograms) -> WedgeFill3DConfig:
        """This config with ``tv_weight``/``eps`` "auto" replaced by what reweighted TV's "auto"
        chooses for ``sinograms`` (:meth:`~napari_ganrec.methods.rwtv.RWTVConfig.resolved`)."""
        return with_automatic_strength(self, sinograms)


# ---------------------------------------------------------------------------------- geometry
def plane_directions(sector: Sector, count: int, offset: float = 0.5) -> list[float]:
    """``count`` measured projection angles (degrees), evenly spread over the measured range.

    The measured angles are ``(start + width, start + 180)`` modulo 180 (``sector`` is the missing
    one); ``offset`` in ``[0, 1)`` shifts the grid within one spacing.
    """
    measured = 180.0 - sector.width
    return [float((sector.start + sector.width + (k + offset) * measured / count) % 180.0) for k in range(count)]


def axial_planes(volume: torch.Tensor, theta_deg: float, z0: int = 0) -> torch.Tensor:
    """The ``(u, z)`` planes of ``volume`` ``(nz, n, n)`` for the in-plane direction ``u`` that the
    projection at ``theta_deg`` measures: ``(n, n, n)``, plane ``a`` (along the normal), rows the
    slices ``z0 .. z0 + n - 1``, columns ``u``.

    Each slice is turned by ``theta_deg`` (:func:`~napari_ganrec.methods.wedge.rotate`), which
    moves the projection angle ``theta_deg`` to 0 (the one that measures the column direction);
    then the slice axis becomes the row axis: the stack is the volume turned by 90 degrees about
    ``u``.
    """
    nz, n, _ = volume.shape
    if not 0 <= z0 <= nz - n:
        raise ValueError(f"z0 must be in [0, {nz - n}] for {nz} slices of {n} px, got {z0}")
    turned = rotate(volume[z0:z0 + n], torch.full((n,), float(theta_deg)))
    return turned.permute(1, 0, 2).contiguous()


def plane_mask(m: int, n: int, sector: Sector, theta_deg: float, device=None) -> torch.Tensor:
    """``(m, n, n)`` float mask in :func:`torch.fft.fftn` layout over a stack of ``m`` adjacent
    :func:`axial_planes` ``(a, z, u)`` of direction ``theta_deg``: 1 where the volume measured the
    Fourier component, 0 in its wedge.

    The component ``(k_a, k_z, k_u)`` is the volume's ``(k_y, k_z, k_x)`` of its turned slices, so
    it is measured when the in-plane orientation ``atan2(k_a, k_u)`` is (for any ``k_z``; the pure
    ``k_z`` line is every slice's mean, measured).
    """
    turned = sector.shifted(theta_deg)
    ka = torch.fft.fftfreq(m, dtype=torch.float64).view(m, 1, 1)
    ku = torch.fft.fftfreq(n, dtype=torch.float64).view(1, 1, n)
    theta = torch.rad2deg(-torch.atan2(ka, ku)) % 180.0
    rel = (theta - turned.start) % 180.0
    missing = (rel > 0) & (rel < turned.width) & ~((ka == 0) & (ku == 0))
    return (~missing).expand(m, n, n).to(device=device, dtype=torch.float32).contiguous()


# ---------------------------------------------------------------------------------- checks
def _as_tensor(name: str, value) -> torch.Tensor:
    t = value.detach().cpu() if torch.is_tensor(value) else torch.from_numpy(np.asarray(value, dtype=np.float32))
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return t


def _check_inputs(volume: torch.Tensor, sinograms: torch.Tensor, angles: np.ndarray) -> None:
    if volume.ndim != 3 or volume.shape[1] != volume.shape[2]:
        raise ValueError(f"first_volume must be (n_slices, n, n), got {tuple(volume.shape)}")
    nz, n, _ = volume.shape
    if sinograms.ndim != 3 or tuple(sinograms.shape) != (nz, angles.size, n):
        raise ValueError(f"sinograms must be (n_slices, n_angles, n_det) = ({nz}, {angles.size}, {n}) to match "
                         f"first_volume {tuple(volume.shape)} and {angles.size} angles, got {tuple(sinograms.shape)}")
    if nz < n:
        raise ValueError(f"3-D wedge filling needs at least as many slices as the slice width (its training "
                         f"planes are {n} x {n}), got {nz} slices of {n} px")


# ---------------------------------------------------------------------------------- the method
class _Trainer:
    """State of one :func:`wedgefill_volume` run (the network, its averaged copy, the planes)."""

    def __init__(self, projector: Projector, b: torch.Tensor, volume: torch.Tensor, sector: Sector,
                 cfg: WedgeFill3DConfig, seed: int):
        self.p, self.cfg, self.sector = projector, cfg, sector
        self.dev = projector.device
        self.n = projector.n_det
        self.b = b.to(self.dev)
        self.b_scale = self.b.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
        self.mask = torch.from_numpy(circle_mask(self.n)).to(self.dev, torch.float32)
        self.fmask = measured_mask(self.n, sector, self.dev)
        inside = volume[:, self.mask.cpu() > 0]
        q = float(torch.quantile(inside.clamp(min=0).reshape(-1)[:2_000_000], 0.99)) if inside.numel() else 0.0
        self.x_scale = q if q > 0 else float(b.abs().max().clamp(min=1e-12)) / self.n
        self.gen = torch.Generator().manual_seed(int(seed) + 11)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.net = WedgeNet(cfg.channels, dilations(cfg.depth)).to(self.dev)
        self.avg = copy.deepcopy(self.net).requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.steps = 0
        self.pool: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.busy = torch.nonzero(self.b.abs().amax(dim=(1, 2)) > 0).view(-1)  # slices with data

    def make_pool(self, teacher: torch.Tensor) -> None:
        """The degraded and clean planes of every direction (normalised units)."""
        cfg, n = self.cfg, self.n
        nz = teacher.shape[0]
        offset = float(torch.rand((), generator=self.gen))
        self.pool = []
        self.thetas = plane_directions(self.sector, cfg.directions, offset)
        for theta in self.thetas:
            z0 = int(torch.randint(nz - n + 1, (), generator=self.gen))
            target = axial_planes(teacher, theta, z0).to(self.dev) * self.mask
            with torch.no_grad():
                sino = self.p.forward(target * self.x_scale)
                keep = sino.abs().amax(dim=(1, 2)) > 0
                inp = torch.zeros_like(target)
                if keep.any():
                    solver = RWTV(self.p, sino[keep], RWTVConfig(tv_weight=cfg.tv_weight, eps=cfg.eps))
                    for _ in range(cfg.pool_iterations):
                        solver.step()
                    inp[keep] = solver.image() / self.x_scale
                    solver.close()
            self.pool.append((inp, target, plane_mask(min(cfg.batch, n), n, self.sector, theta, self.dev)))

    def restore_loss(self) -> torch.Tensor:
        m = min(self.cfg.batch, self.n)
        d = int(torch.randint(len(self.pool), (), generator=self.gen))
        a0 = int(torch.randint(self.n - m + 1, (), generator=self.gen))
        inp, target, fmask = self.pool[d]
        inp, target = inp[a0:a0 + m], target[a0:a0 + m]
        if bool(torch.rand((), generator=self.gen) < 0.5):  # a half turn of the stack keeps both masks
            inp, target = torch.flip(inp, (0, 1, 2)), torch.flip(target, (0, 1, 2))
        err = torch.fft.fftn(self.net(inp) - target, dim=(0, 1, 2), norm="ortho").abs() ** 2
        return (err * fmask).sum() / fmask.sum()

    def fill(self, net: WedgeNet, x: torch.Tensor) -> torch.Tensor:
        """Slices ``x`` (normalised) through ``net``: non-negative, masked (``keep_measured``: only
        the missing wedge from the network)."""
        out = net(x)
        if self.cfg.keep_measured:
            out = x + remove_wedge(out - x, 1.0 - self.fmask)
        return out.clamp(min=0) * self.mask

    def misfit(self, teacher: torch.Tensor) -> torch.Tensor:
        k = min(self.cfg.data_batch, self.busy.numel())
        pick = self.busy[torch.randperm(self.busy.numel(), generator=self.gen)[:k]]
        x = self.fill(self.net, teacher[pick].to(self.dev) / self.x_scale)
        resid = (self.p.forward(x * self.x_scale) - self.b[pick]) / self.b_scale[pick]
        return 0.5 * (resid * resid).mean()

    def step(self, teacher: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        self.net.train()
        restore = self.restore_loss()
        loss = restore
        misfit = torch.zeros(())
        if cfg.data_batch and cfg.data_weight and self.busy.numel():
            misfit = self.misfit(teacher)
            loss = restore + cfg.data_weight * misfit
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps += 1
        a = 1.0 if not cfg.average_last else 1.0 / min(self.steps, cfg.average_last)
        with torch.no_grad():
            for pa, pn in zip(self.avg.parameters(), self.net.parameters()):
                pa.mul_(1 - a).add_(pn, alpha=a)
        return {"loss": float(loss.detach()), "restore": float(restore.detach()), "misfit": float(misfit.detach())}

    @torch.no_grad()
    def apply(self, teacher: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        out = torch.empty_like(teacher)
        for i in range(0, teacher.shape[0], chunk):
            x = teacher[i:i + chunk].to(self.dev) / self.x_scale
            out[i:i + chunk] = (self.fill(self.avg, x) * self.x_scale).cpu()
        return out


def wedgefill_volume(
    first_volume,
    sinograms,
    angles,
    config: WedgeFill3DConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    center: float | None = None,
    progress: Callable[[dict[str, Any]], Any] | None = None,
) -> np.ndarray:
    """3-D wedge filling of a first stage's volume (the module docstring): one network trained on
    the volume's own ``(u, z)`` planes, applied to every slice.

    Parameters
    ----------
    first_volume : array_like or torch.Tensor
        ``(n_slices, n, n)`` the first stage's reconstruction (e.g. reweighted TV per slice,
        :func:`~napari_ganrec.volume.reconstruct_volume`), sinogram units per pixel;
        ``n_slices >= n``.
    sinograms : array_like or torch.Tensor
        ``(n_slices, n_angles, n)`` the measured sinograms of those slices (the data term).
    angles : array_like
        Projection angles in degrees; they must leave a missing wedge.
    config : WedgeFill3DConfig, optional
        Options (default :class:`WedgeFill3DConfig`).
    seed : int
        Seed of the network's initialisation and of every random draw (same seed, same result).
    device : str or torch.device
        Where the network and the projector run.
    center : float, optional
        Rotation centre (detector pixels).
    progress : callable, optional
        Called after every training iteration with ``{"round", "iteration", "loss", "restore",
        "misfit"}``.

    Returns
    -------
    numpy.ndarray
        ``(n_slices, n, n)`` float32, non-negative, zero outside the reconstruction circle.

    Raises
    ------
    ValueError
        When the angles leave no missing wedge, the volume has fewer slices than its width, the
        shapes of the volume, the sinograms and the angles disagree, or an input holds NaNs.
    """
    cfg = config or WedgeFill3DConfig()
    if not isinstance(cfg, WedgeFill3DConfig):
        raise ValueError(f"config must be a WedgeFill3DConfig, got {type(cfg).__name__}")
    ang = np.asarray(angles, dtype=np.float64).ravel()
    if not np.all(np.isfinite(ang)):
        raise ValueError("angles hold NaN or infinite values")
    vol = _as_tensor("first_volume", first_volume)
    b = _as_tensor("sinograms", sinograms)
    _check_inputs(vol, b, ang)
    sector = missing_sector(ang, cfg.min_wedge_deg)
    if sector is None:
        raise ValueError(f"the angles leave no missing wedge wider than {cfg.min_wedge_deg:g} degrees: "
                         "there is nothing for 3-D wedge filling to fill")
    dev = resolve_device(device)
    projector = Projector(Geometry.create(ang, vol.shape[-1], center), device=dev)
    cfg = cfg.resolved(b[b.shape[0] // 2].numpy())  # "auto": one setting, from the middle slice
    trainer = _Trainer(projector, b, vol, sector, cfg, seed)
    teacher = vol.clamp(min=0) * trainer.mask.cpu()
    for r in range(cfg.rounds):
        trainer.make_pool(teacher)
        for it in range(cfg.iterations):
            losses = trainer.step(teacher)
            if progress is not None:
                progress({"round": r + 1, "iteration": it + 1, **losses})
        teacher = trainer.apply(teacher)
    return teacher.numpy().astype(np.float32, copy=False)
