"""The GANrec solver: configuration, one iteration, snapshots and warm starts.

One :class:`GANrecSolver` fits a generator so that the Radon transform of its output matches the
measured sinogram(s), against a discriminator that tells measured from modelled sinograms (Yang et
al. 2020, eq. 1-3). What differs from the authors' code, on purpose:

- each network gets only its own gradients (the discriminator step sees a detached candidate; the
  generator step differentiates with respect to the generator's parameters only);
- the discriminator learns (its learning rate is not 100x below the generator's);
- NaN never escapes: a non-finite loss restores the last good snapshot, halves the learning rates
  and goes on (:class:`DivergenceError` after ``max_recoveries``);
- options live in one frozen :class:`GANrecConfig`; nothing mutates module state;
- the result is quantitative (sinogram units per pixel): the normalised candidate is rescaled by the
  least-squares factor that makes its projection match the data.

Two presets: ``"paper"`` is the published configuration (two-step normalisation of the candidate,
GAN loss + lambda L1, dropout); ``"default"`` is the configuration that reconstructs best in
``benchmarks/quality.py`` (see README).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
from torch import nn

from .classical import _grad
from .networks import Discriminator, Generator
from .projector import Projector

__all__ = ["GANrecConfig", "GANrecSolver", "SolverState", "DivergenceError", "PRESETS", "make_config"]


class DivergenceError(RuntimeError):
    """The solver produced non-finite values more often than ``max_recoveries`` allows."""


@dataclass(frozen=True)
class GANrecConfig:
    """Every option of the GANrec solver (immutable; use :func:`make_config` to derive one).

    Attributes
    ----------
    units : int or None
        Width of the hidden fully connected layers (None: 128 up to 128 px, else 256).
    dropout : float
        Dropout in the fully connected part.
    channels, kernel, n_conv : int
        Convolutional part of the generator.
    disc_channels : tuple of int
        Discriminator feature maps per stride-2 layer.
    spectral_norm : bool
        Spectral normalisation in the discriminator.
    lr_g, lr_d : float
        Adam learning rates of the generator and the discriminator.
    betas : (float, float)
        Adam betas (both networks).
    gan_weight : float
        Weight of the adversarial term in the generator's loss (0 disables the discriminator).
    l1_weight : float
        lambda of eq. (1): weight of the L1 data term.
    l2_weight : float
        Weight of an additional mean squared data term.
    tv_weight : float
        Weight of a total-variation penalty on the candidate (normalised units).
    normalize_candidate : bool
        Paper's two-step normalisation of the candidate and of the model sinogram. When False the
        generator's (non-negative) output is the image in scaled data units.
    output : {"linear", "relu", "softplus"}
        Generator output activation (``"linear"`` for the normalised mode).
    d_steps : int
        Discriminator updates per generator update.
    circle : bool
        Only pixels inside the reconstruction circle are free (outside is 0).
    snapshot_every : int
        Iterations between snapshots of the last good state (for NaN recovery).
    max_recoveries : int
        Non-finite losses tolerated before :class:`DivergenceError`.
    average_last : int
        Average the candidates of the last this-many iterations in the result (0: off).
    """

    units: int | None = None
    dropout: float = 0.25
    channels: int = 32
    kernel: int = 3
    n_conv: int = 9
    disc_channels: tuple[int, ...] = (16, 32, 64, 1)
    spectral_norm: bool = False
    lr_g: float = 1e-3
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    gan_weight: float = 1.0
    l1_weight: float = 10.0
    l2_weight: float = 0.0
    tv_weight: float = 0.0
    normalize_candidate: bool = True
    output: str = "linear"
    d_steps: int = 1
    circle: bool = True
    snapshot_every: int = 50
    max_recoveries: int = 8
    average_last: int = 0

    def __post_init__(self):
        checks = {
            "dropout": 0 <= self.dropout < 1,
            "channels": self.channels >= 1,
            "lr_g": self.lr_g > 0,
            "lr_d": self.lr_d > 0,
            "gan_weight": self.gan_weight >= 0,
            "l1_weight": self.l1_weight >= 0,
            "l2_weight": self.l2_weight >= 0,
            "tv_weight": self.tv_weight >= 0,
            "d_steps": self.d_steps >= 1,
            "snapshot_every": self.snapshot_every >= 1,
            "average_last": self.average_last >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"GANrecConfig.{name} is out of range: {getattr(self, name)!r}")
        if self.units is not None and self.units < 1:
            raise ValueError(f"GANrecConfig.units must be positive, got {self.units}")
        if self.gan_weight + self.l1_weight + self.l2_weight == 0:
            raise ValueError("GANrecConfig: gan_weight, l1_weight and l2_weight are all 0: nothing to fit")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, GANrecConfig] = {
    # The published recipe: GAN + lambda * L1, two-step normalisation, dropout 0.25, layer norm.
    "paper": GANrecConfig(),
    # What wins in benchmarks/quality.py (see README): set below, after the experiments.
    "default": GANrecConfig(),
    # The fast preview: L1 only, a narrower network.
    "fast": GANrecConfig(gan_weight=0.0, channels=8, n_conv=5, dropout=0.0),
}


def make_config(preset: str | GANrecConfig | None = "default", **overrides) -> GANrecConfig:
    """A config from a preset name (or config) with some fields replaced.

    Raises
    ------
    ValueError
        Unknown preset or option name, or an option out of range.
    """
    if isinstance(preset, GANrecConfig):
        base = preset
    else:
        name = "default" if preset is None else str(preset)
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        base = PRESETS[name]
    known = {f.name for f in fields(GANrecConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown GANrec option(s) {unknown}; known: {sorted(known)}")
    for key in ("disc_channels", "betas"):
        if key in overrides and overrides[key] is not None:
            overrides[key] = tuple(overrides[key])
    return replace(base, **overrides)


@dataclass
class SolverState:
    """What a run leaves for the next (warm start): network and optimiser weights on the CPU."""

    config: GANrecConfig
    sino_shape: tuple[int, int]
    generator: dict
    discriminator: dict
    opt_g: dict
    opt_d: dict
    iteration: int
    lr_scale: float = 1.0


def _normalize2(x: torch.Tensor) -> torch.Tensor:
    """The paper's two-step normalisation per sample: standardise, then min-max to [0, 1]."""
    dims = tuple(range(1, x.ndim))
    x = (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-8)
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo + 1e-8)


def _to_cpu(state: dict) -> dict:
    return copy.deepcopy({k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in state.items()})


def _optim_to_cpu(state: dict) -> dict:
    out = copy.deepcopy(state)
    for s in out["state"].values():
        for k, v in list(s.items()):
            if torch.is_tensor(v):
                s[k] = v.detach().cpu()
    return out


class GANrecSolver:
    """GANrec on a batch of sinograms that share one geometry.

    Parameters
    ----------
    projector : Projector
        Built once for the geometry.
    sinograms : torch.Tensor
        ``(B, n_angles, n_det)`` line integrals on the projector's device.
    config : GANrecConfig
        Options (see :func:`make_config`).
    seed : int
        Seeds network initialisation and dropout: a CPU run is reproducible.
    warm_start : SolverState, optional
        Start from these weights (e.g. the previous slice's) instead of a random initialisation.
    """

    def __init__(
        self,
        projector: Projector,
        sinograms: torch.Tensor,
        config: GANrecConfig | None = None,
        seed: int = 0,
        warm_start: SolverState | None = None,
    ):
        self.config = config = config or PRESETS["default"]
        self.projector = projector
        self.device = projector.device
        if sinograms.ndim != 3 or tuple(sinograms.shape[1:]) != projector.geometry.sino_shape:
            raise ValueError(
                f"sinograms must be (B, {projector.n_angles}, {projector.n_det}), got {tuple(sinograms.shape)}"
            )
        self.batch = sinograms.shape[0]
        n = projector.n_det
        b = sinograms.to(self.device, torch.float32)
        # per-slice scale: the generator sees data of unit magnitude whatever the units
        self.scale = b.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
        self.b_scaled = b / self.scale
        self.b_norm = _normalize2(b) if config.normalize_candidate else self.b_scaled
        self.net_input = _normalize2(b).unsqueeze(1)
        from .geometry import circle_mask

        mask = circle_mask(n) if config.circle else np.ones((n, n), bool)
        self.mask = torch.from_numpy(mask).to(self.device, torch.float32)
        units = config.units or (128 if n <= 128 else 256)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(seed) + 1)
        with torch.random.fork_rng(devices=[] if self.device.type != "cuda" else [self.device]):
            torch.manual_seed(int(seed))
            self.G = Generator(
                projector.n_angles, n, units=units, dropout=config.dropout, channels=config.channels,
                kernel=config.kernel, n_conv=config.n_conv, output=config.output,
                output_bias=0.1, dropout_generator=self._gen,
            ).to(self.device)
            self.D = Discriminator(config.disc_channels, spectral_norm=config.spectral_norm).to(self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=config.betas)
        self.iteration = 0
        self.lr_scale = 1.0
        self.recoveries = 0
        self._bce = nn.BCEWithLogitsLoss()
        if warm_start is not None:
            self.load_state(warm_start)
        self._snapshot = self._take_snapshot()
        self._last_candidate: torch.Tensor | None = None
        self._avg: torch.Tensor | None = None
        self._avg_count = 0

    # ------------------------------------------------------------------ state
    def _take_snapshot(self) -> dict:
        return {
            "G": copy.deepcopy(self.G.state_dict()),
            "D": copy.deepcopy(self.D.state_dict()),
            "opt_g": copy.deepcopy(self.opt_g.state_dict()),
            "opt_d": copy.deepcopy(self.opt_d.state_dict()),
        }

    def _restore_snapshot(self) -> None:
        self.G.load_state_dict(self._snapshot["G"])
        self.D.load_state_dict(self._snapshot["D"])
        self.opt_g.load_state_dict(self._snapshot["opt_g"])
        self.opt_d.load_state_dict(self._snapshot["opt_d"])

    def _set_lr(self) -> None:
        for group in self.opt_g.param_groups:
            group["lr"] = self.config.lr_g * self.lr_scale
        for group in self.opt_d.param_groups:
            group["lr"] = self.config.lr_d * self.lr_scale

    def state(self) -> SolverState:
        """A CPU copy of the weights and optimiser states, to warm-start another run."""
        return SolverState(
            config=self.config,
            sino_shape=self.projector.geometry.sino_shape,
            generator=_to_cpu(self.G.state_dict()),
            discriminator=_to_cpu(self.D.state_dict()),
            opt_g=_optim_to_cpu(self.opt_g.state_dict()),
            opt_d=_optim_to_cpu(self.opt_d.state_dict()),
            iteration=self.iteration,
            lr_scale=self.lr_scale,
        )

    def load_state(self, state: SolverState) -> None:
        """Continue from ``state`` (same sinogram shape and network architecture).

        Raises
        ------
        ValueError
            When the state was made for another sinogram shape or architecture.
        """
        if not isinstance(state, SolverState):
            raise ValueError(f"warm_start must be a SolverState, got {type(state).__name__}")
        if tuple(state.sino_shape) != self.projector.geometry.sino_shape:
            raise ValueError(
                f"warm_start was made for sinograms of shape {tuple(state.sino_shape)}, "
                f"not {self.projector.geometry.sino_shape}"
            )
        arch = ("units", "channels", "kernel", "n_conv", "disc_channels", "spectral_norm", "output")
        for key in arch:
            if getattr(state.config, key) != getattr(self.config, key):
                raise ValueError(f"warm_start has another network architecture ({key} differs)")
        self.G.load_state_dict(state.generator)
        self.D.load_state_dict(state.discriminator)
        self.opt_g.load_state_dict(state.opt_g)
        self.opt_d.load_state_dict(state.opt_d)
        self.lr_scale = state.lr_scale
        self._set_lr()

    # ------------------------------------------------------------------ one iteration
    def _candidate(self) -> torch.Tensor:
        """The generator's image ``(B, n, n)`` (normalised or scaled data units), masked."""
        out = self.G(self.net_input)[:, 0] * self.mask
        if self.config.normalize_candidate:
            out = _normalize2(out) * self.mask
        return out

    def _model_sino(self, candidate: torch.Tensor) -> torch.Tensor:
        s = self.projector.forward(candidate)
        return _normalize2(s) if self.config.normalize_candidate else s

    def step(self) -> dict[str, float]:
        """One GANrec iteration (discriminator update(s), then generator update).

        Returns the losses as floats: ``g_loss``, ``d_loss``, ``l1``, ``adv``. On a non-finite loss
        the last good snapshot is restored, the learning rates are halved and ``recovered`` is 1.
        """
        cfg = self.config
        self.G.train()
        candidate = self._candidate()
        model = self._model_sino(candidate)
        real = self.b_norm.unsqueeze(1)
        d_loss = torch.zeros((), device=self.device)
        if cfg.gan_weight > 0:
            fake_detached = model.detach().unsqueeze(1)
            for _ in range(cfg.d_steps):
                logits_real = self.D(real)
                logits_fake = self.D(fake_detached)
                d_loss = self._bce(logits_real, torch.ones_like(logits_real)) + self._bce(
                    logits_fake, torch.zeros_like(logits_fake)
                )
                self.opt_d.zero_grad(set_to_none=True)
                if torch.isfinite(d_loss):
                    d_loss.backward()
                    self.opt_d.step()
        resid = model - self.b_norm
        l1 = resid.abs().mean()
        g_loss = cfg.l1_weight * l1
        if cfg.l2_weight > 0:
            g_loss = g_loss + cfg.l2_weight * (resid**2).mean()
        adv = torch.zeros((), device=self.device)
        if cfg.gan_weight > 0:
            logits = self.D(model.unsqueeze(1))
            adv = self._bce(logits, torch.ones_like(logits))
            g_loss = g_loss + cfg.gan_weight * adv
        if cfg.tv_weight > 0:
            g = _grad(candidate)
            g_loss = g_loss + cfg.tv_weight * torch.sqrt((g**2).sum(dim=1) + 1e-8).mean()
        if not (torch.isfinite(g_loss) and torch.isfinite(d_loss)):
            return self._recover()
        params = [p for p in self.G.parameters() if p.requires_grad]
        grads = torch.autograd.grad(g_loss, params)
        for p, gr in zip(params, grads):
            p.grad = gr
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.iteration += 1
        self._last_candidate = candidate.detach()
        if cfg.average_last:
            self._avg = self._last_candidate.clone() if self._avg is None else self._avg + (
                self._last_candidate - self._avg) / min(self._avg_count + 1, cfg.average_last)
            self._avg_count += 1
        if self.iteration % cfg.snapshot_every == 0:
            self._snapshot = self._take_snapshot()
        return {
            "g_loss": float(g_loss.detach()),
            "d_loss": float(d_loss.detach()),
            "l1": float(l1.detach()),
            "adv": float(adv.detach()),
            "recovered": 0.0,
        }

    def _recover(self) -> dict[str, float]:
        self.recoveries += 1
        if self.recoveries > self.config.max_recoveries:
            raise DivergenceError(
                f"GANrec diverged {self.recoveries} times (non-finite loss); lower lr_g/lr_d"
            )
        self._restore_snapshot()
        self.lr_scale *= 0.5
        self._set_lr()
        nan = math.nan
        return {"g_loss": nan, "d_loss": nan, "l1": nan, "adv": nan, "recovered": 1.0}

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def candidate(self) -> torch.Tensor:
        """The current candidate (normalised units), evaluated without dropout."""
        self.G.eval()
        try:
            if self.config.average_last and self._avg is not None:
                return self._avg
            return self._candidate()
        finally:
            self.G.train()

    @torch.no_grad()
    def image(self, candidate: torch.Tensor | None = None) -> torch.Tensor:
        """The reconstruction ``(B, n, n)`` in the sinogram's units per pixel.

        The normalised candidate ``c`` is scaled per slice by ``<A c, b> / <A c, A c>``, the
        least-squares factor that makes its projection reproduce the data.
        """
        c = self.candidate() if candidate is None else candidate
        if not self.config.normalize_candidate:
            return (c * self.scale).clamp(min=0)
        ac = self.projector.forward(c)
        b = self.b_scaled * self.scale
        num = (ac * b).sum(dim=(1, 2))
        den = (ac * ac).sum(dim=(1, 2)).clamp(min=1e-20)
        return c * (num / den).view(-1, 1, 1)

    @torch.no_grad()
    def residual(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """Model minus measured sinogram ``(B, A, D)`` in data units."""
        x = self.image() if image is None else image
        return self.projector.forward(x) - self.b_scaled * self.scale

    def close(self) -> None:
        """Free the networks and optimisers (and cached GPU memory)."""
        for name in ("G", "D", "opt_g", "opt_d", "_snapshot", "_avg", "_last_candidate"):
            if hasattr(self, name):
                setattr(self, name, None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
