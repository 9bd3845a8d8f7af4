"""Self-supervised wedge filling (IsoNet / DeepDeWedge style), per slice, with a small conv net.

The scan measured only some Fourier directions of the slice (the projection angles; see
:mod:`.wedge`). Samples look alike in every orientation, so the measured directions of the slice's
own reconstruction teach what the missing ones hold. Every iteration:

1. the *teacher* (the previous stage's image, e.g. reweighted TV's in ``"rwtv+wedgefill"``) is
   rotated, which turns measured directions into the missing wedge: with ``removal="reproject"``
   (the default) one of ``pool`` copies at evenly spread angles is made per iteration until the
   pool is full, with ``"fourier"`` ``rotations`` fresh random copies every iteration;
2. the wedge is removed again from each rotated copy: ``"reproject"`` projects it at the measured
   angles and reconstructs that with reweighted TV (the input then has the first stage's own
   artefacts), ``"fourier"`` zeroes the missing sector of its Fourier transform;
3. the network learns to map the wedge-removed copy back to the rotated copy (``rotations`` copies
   per iteration, a half turn as a free second pair), with the loss taken only over the Fourier
   directions that are measured in the rotated copy (where the target is data, not the teacher's
   own guess);
4. the same network is applied to the teacher (``"fourier"``: to the wedge-removed teacher, and
   only its missing wedge is taken; ``keep_measured``: the same with ``"reproject"``); the output,
   non-negative and inside the reconstruction circle, is the stage's image, and a data term
   ``data_weight * 0.5 mean((A x - b)/max|b|)^2`` on it is added to the loss (the real sinogram,
   through the real projector). The result is the running mean of the last ``average_last`` images.

With ``"fourier"``, every ``update_every`` iterations the teacher becomes the current image
(IsoNet's refinement rounds). Without an initial image (``method="wedgefill"`` alone) the teacher
starts from the non-negative FBP. Angles that leave no wedge (no gap wider than ``min_wedge_deg``)
are a ``ValueError`` before any stage of the chain starts: there is nothing to fill, and a result
labelled "wedge filling" would be reweighted TV's. ``orientation_weight > 0`` adds the adversarial orientation prior of
:mod:`.orientation` (#15, experiment 2), ``projection_weight > 0`` the adversary on projections at
unmeasured angles of :mod:`.projection_critic` (experiment 3). Measured figures:
docs/experiments.md (issue 15).

The network is a small residual stack of dilated 3x3 convolutions (:class:`WedgeNet`), not the
GANrec generator: that generator maps a whole sinogram to an image through fully connected layers,
so it cannot take an image, and it has no translation equivariance; wedge filling needs an
image-to-image map whose receptive field (here about 60 px) spans the wedge's streaks and that
applies the same local rule in every place and orientation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..acceleration import Losses
from ._ops import RunningMean
from .base import Stage, StageConfig, check_fields
from .fbp import fbp
from .orientation import OrientationCritic, orientation_views
from .projection_critic import NORMS, REALS, ProjectionCritic, angle_projector, missing_angles, projection_windows
from .rwtv import AUTO, RWTV, RWTVConfig, auto_or_number, image_scale, with_automatic_strength
from .wedge import measured_mask, missing_sector, remove_wedge, rotate

__all__ = ["WedgeFillConfig", "WedgeFill", "WedgeNet", "REMOVALS", "dilations"]

#: How a rotated copy loses its wedge (:class:`WedgeFillConfig` ``removal``).
REMOVALS = ("reproject", "fourier")


def dilations(depth: int) -> tuple[int, ...]:
    """``depth=3`` -> ``(1, 2, 4, 4, 2, 1)``: the network's dilations, up and back down."""
    up = tuple(2**i for i in range(depth))
    return up + up[::-1]


@dataclass(frozen=True)
class WedgeFillConfig(StageConfig):
    """Options of wedge filling.

    Attributes
    ----------
    removal : {"reproject", "fourier"}
        How the wedge is removed from a rotated copy: ``"reproject"`` projects it at the measured
        angles and reconstructs that with reweighted TV (``pool_iterations``, ``tv_weight``,
        ``eps``), so the network learns to undo exactly what the first stage leaves; the network
        then maps the teacher itself to the image. ``"fourier"`` zeroes the missing sector of its
        Fourier transform; the network then fills the wedge of the wedge-removed teacher.
    channels : int
        Feature maps of the network.
    depth : int
        The network's residual blocks of dilated 3x3 convolutions go up as dilations 1, 2, ...,
        ``2**(depth-1)`` and back down (depth 4: about 60 px of receptive field).
    lr : float
        Adam learning rate.
    rotations : int
        Rotated copies per iteration (the self-supervised batch).
    pool : int
        ``"reproject"``: rotated copies made (one per iteration over the first ``pool`` ones, at
        evenly spread angles with a random offset), each reconstructed once, then drawn from.
    pool_iterations, tv_weight, eps : int, float or "auto", float or "auto"
        ``"reproject"``: the reweighted-TV run that reconstructs each copy (see
        :class:`~napari_ganrec.methods.rwtv.RWTVConfig`; a chain's ``tv_weight=`` reaches both).
        ``"auto"`` (the default) chooses them from the sinogram's noise as reweighted TV's own
        ``"auto"`` does (:meth:`resolved`), so that in ``"rwtv+wedgefill"`` both stages use one
        setting.
    keep_measured : bool
        The image keeps the teacher's measured Fourier directions and takes only the missing wedge
        from the network (``"fourier"`` always does).
    update_every : int
        ``"fourier"``: iterations between two renewals of the teacher (0: never).
    average_last : int
        The result is the running mean of about the last this-many images (0: the last one).
    data_weight : float
        Weight of the data term on the stage's image.
    orientation_weight : float
        Weight of the adversarial orientation prior (:mod:`.orientation`; 0: off): a critic
        tells patches along measured directions from patches along missing ones, and the network
        is trained to make them alike.
    orientation_patch : int
        Side of the critic's patches (px).
    projection_weight : float
        Weight of the adversary on projections (:mod:`.projection_critic`; 0: off): a 1-D critic
        tells measured projections from the image's projections at random unmeasured angles (the
        missing sector, at about the measured step), and the network is trained to make them alike.
    projection_count : int
        Projection windows per slice and per iteration, real and fake each.
    projection_width : int
        Neighbouring angles per window (1: single projections; more: a thin 2-D critic).
    projection_real : {"data", "image"}
        What the critic calls real: ``"data"``, the measured sinogram's rows; ``"image"``, the
        image's own projections at the measured angles (the same rendering as the fake ones,
        without the data's noise).
    projection_norm : {"row", "sinogram"}
        ``"row"``: every projection divided by its own maximum; ``"sinogram"``: by the measured
        sinogram's maximum.
    min_wedge_deg : float
        Angular gaps narrower than this (degrees) are no missing wedge.
    circle : bool
        Only pixels inside the reconstruction circle are free (outside is 0).
    """

    removal: str = "reproject"
    channels: int = 16
    depth: int = 4
    lr: float = 1e-3
    rotations: int = 4
    pool: int = 16
    pool_iterations: int = 300
    tv_weight: float | str = AUTO
    eps: float | str = AUTO
    keep_measured: bool = False
    update_every: int = 0
    average_last: int = 50
    data_weight: float = 1.0
    orientation_weight: float = 0.0
    orientation_patch: int = 24
    projection_weight: float = 0.0
    projection_count: int = 8
    projection_width: int = 1
    projection_real: str = "data"
    projection_norm: str = "row"
    min_wedge_deg: float = 5.0
    circle: bool = True

    def __post_init__(self):
        object.__setattr__(self, "tv_weight", auto_or_number(self.tv_weight, "tv_weight", False, "WedgeFillConfig"))
        object.__setattr__(self, "eps", auto_or_number(self.eps, "eps", True, "WedgeFillConfig"))
        check_fields(self, {
            "removal": self.removal in REMOVALS,
            "channels": self.channels >= 1,
            "pool": self.pool >= 1,
            "pool_iterations": self.pool_iterations >= 1,
            "depth": 1 <= self.depth <= 8,
            "lr": self.lr > 0,
            "rotations": self.rotations >= 1,
            "update_every": self.update_every >= 0,
            "average_last": self.average_last >= 0,
            "data_weight": self.data_weight >= 0,
            "orientation_weight": self.orientation_weight >= 0,
            "orientation_patch": self.orientation_patch >= 4,
            "projection_weight": math.isfinite(self.projection_weight) and self.projection_weight >= 0,
            "projection_count": self.projection_count >= 1,
            "projection_width": self.projection_width >= 1,
            "projection_real": self.projection_real in REALS,
            "projection_norm": self.projection_norm in NORMS,
            "min_wedge_deg": 0 <= self.min_wedge_deg < 180,
        })

    def check_angles(self, angles_deg) -> None:
        """Raise ``ValueError`` when ``angles_deg`` leave no missing wedge to fill (no gap wider
        than ``min_wedge_deg``)."""
        if missing_sector(angles_deg, self.min_wedge_deg) is None:
            a = np.asarray(angles_deg, dtype=float)
            raise ValueError(
                f"wedge filling needs a missing wedge, but these {a.size} angles ({a.min():g} to {a.max():g} "
                f"degrees) leave no gap wider than {self.min_wedge_deg:g} degrees; use method='rwtv'")

    def resolved(self, sinograms) -> WedgeFillConfig:
        """This config with ``tv_weight``/``eps`` "auto" replaced by what reweighted TV's "auto"
        chooses for ``sinograms`` (:meth:`~napari_ganrec.methods.rwtv.RWTVConfig.resolved`)."""
        return with_automatic_strength(self, sinograms)


class WedgeNet(nn.Module):
    """Image ``(B, n, n)`` -> image: ``x + last(h)``, where ``h`` goes through residual blocks
    ``h + leaky_relu(conv_d(h))`` of dilated 3x3 convolutions (so every layer gets its gradient),
    and the last layer starts at zero (the untrained network is the identity)."""

    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8, 8, 4, 2, 1)):
        super().__init__()
        self.first = nn.Conv2d(1, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.act = nn.LeakyReLU(0.1)
        self.last = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.first(x.unsqueeze(1)))
        for conv in self.blocks:
            h = h + self.act(conv(h))
        return x + self.last(h)[:, 0]


class WedgeFill(Stage):
    """Self-supervised wedge filling (see the module docstring).

    Losses: ``loss`` (the total), ``restore`` (the self-supervised term), ``misfit`` (the data
    term, ``0.5 mean((A x - b) / max|b|)^2``), ``wedge_deg`` (the missing sector's width); with
    the critics also ``orient_d`` / ``orient_g`` and ``proj_d`` / ``proj_g`` (the critic's BCE over
    real and fake, chance ``2 ln 2 = 1.39``; the network's, chance ``ln 2 = 0.69``).
    """

    name = "wedgefill"
    label = "wedge filling"
    monitor = "loss"

    def __init__(self, projector, sinograms, config: WedgeFillConfig | None = None, *, x0=None, seed=0,
                 acceleration=None):
        super().__init__(projector, sinograms, config or WedgeFillConfig(), x0=x0)
        self.config = cfg = self.config.resolved(self.b)  # "auto" not chosen upstream: from this batch
        n = projector.n_det
        if not cfg.circle:
            self.mask = torch.ones_like(self.mask)
        cfg.check_angles(projector.geometry.angles_deg)
        self.sector = missing_sector(projector.geometry.angles_deg, cfg.min_wedge_deg)
        self.fmask = measured_mask(n, self.sector, self.device)
        with torch.no_grad():
            self.scale = self.b.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
            if x0 is None:
                x0 = (fbp(projector, self.b) * self.mask).clamp(min=0)
            self.x_scale = image_scale(projector, self.b, self.mask)
            self.teacher = (x0.to(self.device, torch.float32).clamp(min=0) * self.mask / self.x_scale).contiguous()
            self.current = self.teacher.clone()
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(int(seed) + 7)
        with torch.random.fork_rng(devices=[] if self.device.type != "cuda" else [self.device]):
            torch.manual_seed(int(seed))
            self.net = WedgeNet(cfg.channels, dilations(cfg.depth)).to(self.device)
            self.critic = OrientationCritic().to(self.device) if cfg.orientation_weight > 0 else None
            self.proj_critic = (ProjectionCritic(cfg.projection_width).to(self.device)
                                if cfg.projection_weight > 0 else None)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.opt_critic = None
        if self.critic is not None:
            # the patch size is checked before any work
            orientation_views(self.teacher[:1], self.sector, cfg.orientation_patch, 1, torch.Generator())
            self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self._bce = nn.BCEWithLogitsLoss()
        self.opt_proj = None
        if self.proj_critic is not None:
            self._init_projection_critic(projector)
        self._avg = RunningMean(cfg.average_last)
        self._pool: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._offset = float(torch.rand((), generator=self._gen))

    def _init_projection_critic(self, projector) -> None:
        """The second projector (a grid over the missing sector at about the measured step) and the
        critic's optimiser; the window width is checked before any work."""
        cfg = self.config
        self.opt_proj = torch.optim.Adam(self.proj_critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        n_meas = len({round(float(a) % 180.0, 9) for a in projector.geometry.angles_deg})
        step = (180.0 - self.sector.width) / n_meas  # the measured range is n_meas steps wide
        self.missing_projector = angle_projector(projector, missing_angles(self.sector, step))
        rows = min(self.missing_projector.n_angles, projector.n_angles)
        if cfg.projection_width > rows:
            raise ValueError(f"projection_width must be 1 to {rows} neighbouring angles for these angles "
                             f"({self.missing_projector.n_angles} missing, {projector.n_angles} measured), "
                             f"got {cfg.projection_width}")

    # ------------------------------------------------------------------ one iteration
    def _fill(self, teacher: torch.Tensor) -> torch.Tensor:
        """The stage's image from the teacher (normalised units), non-negative and masked."""
        if self.config.removal == "fourier":
            out = self.net(remove_wedge(teacher, self.fmask))
        else:
            out = self.net(teacher)
        if self.config.removal == "fourier" or self.config.keep_measured:
            out = teacher + remove_wedge(out - teacher, 1.0 - self.fmask)
        return out.clamp(min=0) * self.mask

    def _reconstruct_copy(self, target: torch.Tensor) -> torch.Tensor:
        """``target`` (normalised) projected at the measured angles and reconstructed by reweighted TV."""
        cfg = self.config
        with torch.no_grad():
            sino = self.projector.forward(target * self.x_scale)
            solver = RWTV(self.projector, sino, RWTVConfig(tv_weight=cfg.tv_weight, eps=cfg.eps,
                                                           circle=cfg.circle))
            for _ in range(cfg.pool_iterations):
                solver.step()
            out = solver.image() / self.x_scale
            solver.close()
        return out

    def _grow_pool(self) -> None:
        """One more rotated copy per slice (its input, target and measured mask) in the pool."""
        k = len(self._pool)
        alpha = (k + self._offset) * 180.0 / self.config.pool
        a = torch.full((self.batch,), alpha)
        target = rotate(self.teacher, a) * self.mask
        inp = self._reconstruct_copy(target)
        self._pool.append((inp, target, measured_mask(self.projector.n_det, self.sector.shifted(alpha),
                                                      self.device)))

    def _restore_loss(self) -> torch.Tensor:
        k = self.config.rotations
        n = self.projector.n_det
        if self.config.removal == "fourier":
            alpha = torch.rand(self.batch * k, generator=self._gen) * 180.0
            target = rotate(self.teacher.repeat_interleave(k, dim=0), alpha) * self.mask
            inp = remove_wedge(target, self.fmask)
            masks = torch.stack([measured_mask(n, self.sector.shifted(float(a)), self.device) for a in alpha])
        else:
            pick = torch.randint(len(self._pool), (k,), generator=self._gen).tolist()
            inp = torch.cat([self._pool[i][0] for i in pick])
            target = torch.cat([self._pool[i][1] for i in pick])
            masks = torch.stack([self._pool[i][2] for i in pick]).repeat_interleave(self.batch, dim=0)
            # a half turn keeps every Fourier orientation (modulo 180), so it is a free second pair
            turn = torch.rand(inp.shape[0], generator=self._gen) < 0.5
            inp = torch.where(turn.view(-1, 1, 1), torch.flip(inp, (-2, -1)), inp)
            target = torch.where(turn.view(-1, 1, 1), torch.flip(target, (-2, -1)), target)
        err = torch.fft.fft2(self.net(inp) - target, norm="ortho").abs() ** 2
        return (err * masks).sum() / (masks.sum() * 1.0)

    def step(self) -> Losses:
        cfg = self.config
        self.iteration += 1
        if cfg.removal == "reproject" and len(self._pool) < cfg.pool:
            self._grow_pool()
        self.net.train()
        restore = self._restore_loss()
        image = self._fill(self.teacher)
        misfit = self._misfit(image)
        loss = restore + cfg.data_weight * misfit
        extra = {}
        if self.critic is not None:
            extra = self._orientation_terms(image)
            loss = loss + cfg.orientation_weight * extra["orient_g"]
        if self.proj_critic is not None:
            terms = self._projection_terms(image)
            loss = loss + cfg.projection_weight * terms["proj_g"]
            extra.update(terms)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.current = self._fill(self.teacher)
            self._avg.add(self.current)
            if cfg.removal == "fourier" and cfg.update_every and self.iteration % cfg.update_every == 0:
                self.teacher = self.current.clone()
        return Losses({"loss": loss.detach(), "restore": restore.detach(), "misfit": misfit.detach(),
                       "wedge_deg": self.sector.width, **{k: v.detach() for k, v in extra.items()}})

    def _orientation_terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One critic update on detached views, then the network's term (missing views called real)."""
        real, fake = orientation_views(image, self.sector, self.config.orientation_patch, self.config.rotations,
                                       self._gen)
        d_loss, g_loss = self._adversarial_terms(self.critic, self.opt_critic, real, fake)
        return {"orient_d": d_loss, "orient_g": g_loss}

    def _adversarial_terms(self, critic: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of ``critic`` on detached ``real`` vs ``fake``, then the network's BCE for
        ``fake`` called real (through a frozen critic): ``(critic loss, network loss)``."""
        ones = torch.ones(real.shape[0], device=self.device)
        zeros = torch.zeros_like(ones)
        d_loss = self._bce(critic(real.detach()), ones) + self._bce(critic(fake.detach()), zeros)
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        opt.step()
        for p in critic.parameters():
            p.requires_grad_(False)
        g_loss = self._bce(critic(fake), ones)
        for p in critic.parameters():
            p.requires_grad_(True)
        return d_loss, g_loss

    def _projection_terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of the projection critic on detached windows, then the network's term
        (the projections at unmeasured angles called real)."""
        cfg = self.config
        if cfg.projection_real == "data":
            real_sino = self.b
        else:
            with torch.no_grad():
                real_sino = self.projector.forward(image.detach() * self.x_scale)
        fake_sino = self.missing_projector.forward(image * self.x_scale)
        scale = self.scale.reshape(-1)

        def windows(sino):
            return projection_windows(sino, cfg.projection_width, cfg.projection_count, self._gen,
                                      cfg.projection_norm, scale)

        d_loss, g_loss = self._adversarial_terms(self.proj_critic, self.opt_proj, windows(real_sino),
                                                 windows(fake_sino))
        return {"proj_d": d_loss, "proj_g": g_loss}

    def _misfit(self, image: torch.Tensor) -> torch.Tensor:
        resid = (self.projector.forward(image * self.x_scale) - self.b) / self.scale
        return 0.5 * (resid * resid).mean()

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        x = self._avg.mean if self._avg.mean is not None else self.current
        return x * self.x_scale

    # ------------------------------------------------------------------ state
    def state(self, host: bool = True) -> dict:
        """The network's and the optimiser's weights, and the critics' where there are (the learned
        filling carries to the next slice; each slice keeps its own teacher)."""
        def copy(v):
            if torch.is_tensor(v):
                v = v.detach()
                return v.cpu().clone() if host else v.clone()
            if isinstance(v, dict):
                return {k: copy(w) for k, w in v.items()}
            if isinstance(v, list):
                return [copy(w) for w in v]
            return v

        return {"stage": self.name, "iteration": self.iteration, "n": self.projector.n_det,
                "arch": {"channels": self.config.channels, "depth": self.config.depth},
                "net": copy(self.net.state_dict()), "opt": copy(self.opt.state_dict()),
                **({"critic": copy(self.critic.state_dict()), "opt_critic": copy(self.opt_critic.state_dict())}
                   if self.critic is not None else {}),
                **({"proj_critic": copy(self.proj_critic.state_dict()), "opt_proj": copy(self.opt_proj.state_dict())}
                   if self.proj_critic is not None else {})}

    def load_state(self, state) -> None:
        """Continue with the network of :meth:`state` (same image size and architecture).

        Raises
        ------
        ValueError
            When the state was made for another stage, image size or network architecture.
        """
        self._check_state(state)
        arch = {"channels": self.config.channels, "depth": self.config.depth}
        if state.get("arch") != arch:
            raise ValueError(f"warm_start has another wedgefill network ({state.get('arch')}, not {arch})")
        if state.get("n") != self.projector.n_det:
            raise ValueError(f"warm_start was made for {state.get('n')} px images, not {self.projector.n_det}")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        if self.critic is not None and "critic" in state:
            self.critic.load_state_dict(state["critic"])
            self.opt_critic.load_state_dict(state["opt_critic"])
        if self.proj_critic is not None and "proj_critic" in state:
            if state["proj_critic"]["net.0.weight"].shape[1] != self.config.projection_width:
                raise ValueError(f"warm_start has a projection critic for windows of "
                                 f"{state['proj_critic']['net.0.weight'].shape[1]} angles, not "
                                 f"{self.config.projection_width}")
            self.proj_critic.load_state_dict(state["proj_critic"])
            self.opt_proj.load_state_dict(state["opt_proj"])
        with torch.no_grad():
            self.current = self._fill(self.teacher)
        self._avg.reset()

    def close(self) -> None:
        self.teacher = self.current = None
        self._pool = []
        self._avg.reset()
