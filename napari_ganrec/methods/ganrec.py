"""GANrec, the paper's method (Yang et al. 2020, eq. 1-3): a generator and a discriminator.

At every iteration the discriminator learns to tell the measured sinogram from the projection of
the generator's image, and the generator is updated on ``GAN loss + lambda * L1`` between the two,
both after the paper's two-step normalisation (standardise, then min-max to [0, 1]). What differs
from the authors' code, on purpose:

- each network gets only its own gradients (the discriminator step sees a detached candidate; the
  generator step differentiates with respect to the generator's parameters only);
- the discriminator learns (its learning rate is not 100x below the generator's);
- NaN never escapes: a non-finite loss restores the last good snapshot, halves the learning rates
  and goes on (:class:`DivergenceError` after ``max_recoveries``); on a GPU the finite check is read
  once every ``check_every`` iterations (:mod:`~napari_ganrec.acceleration`);
- the result is quantitative (sinogram units per pixel): the normalised candidate is rescaled by the
  least-squares factor that makes its projection match the data;
- it can start from an initial image ``x0`` (a chain such as ``"rwtv+ganrec"``): the candidate is
  then ``relu(x0 / s + G(b))`` with the generator's last layer starting at 0, so the first
  candidate is the initial image.

(Past 400 lines on purpose: the training step, the deferred finite check with snapshot recovery and
the compiled-backward fallback share the optimisers' state and are one job; the networks live in
:mod:`.networks`, the optimisers are built by :func:`make_optimizers`.)
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ..acceleration import CompiledOrEager, Losses, keep_cpu_heap, resolve_acceleration
from ._ops import RunningMean
from .base import Stage, StageConfig, check_fields
from .networks import Discriminator, Generator

__all__ = ["GANrecConfig", "GANrec", "DivergenceError", "make_optimizers", "normalize2"]

_ARCH = ("units", "channels", "kernel", "n_conv", "disc_channels", "spectral_norm")


class DivergenceError(RuntimeError):
    """The solver produced non-finite values more often than ``max_recoveries`` allows."""


@dataclass(frozen=True)
class GANrecConfig(StageConfig):
    """Options of GANrec (the paper's values by default).

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
        Weight of the adversarial term in the generator's loss (> 0: this is a GAN).
    l1_weight : float
        lambda of eq. (1): weight of the L1 data term.
    d_steps : int
        Discriminator updates per generator update.
    circle : bool
        Only pixels inside the reconstruction circle are free (outside is 0).
    snapshot_every : int
        Iterations between snapshots of the last good state (for NaN recovery).
    max_recoveries : int
        Non-finite losses tolerated before :class:`DivergenceError`.
    average_last : int
        Average about the last this-many candidates in the result (0: off); their spread is
        :meth:`GANrec.uncertainty`.
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
    d_steps: int = 1
    circle: bool = True
    snapshot_every: int = 50
    max_recoveries: int = 8
    average_last: int = 0

    def __post_init__(self):
        object.__setattr__(self, "disc_channels", tuple(int(c) for c in self.disc_channels))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        check_fields(self, {
            "units": self.units is None or self.units >= 1,
            "dropout": 0 <= self.dropout < 1,
            "channels": self.channels >= 1,
            "n_conv": self.n_conv >= 1,
            "lr_g": self.lr_g > 0,
            "lr_d": self.lr_d > 0,
            "gan_weight": self.gan_weight > 0,
            "l1_weight": self.l1_weight >= 0,
            "d_steps": self.d_steps >= 1,
            "snapshot_every": self.snapshot_every >= 1,
            "max_recoveries": self.max_recoveries >= 0,
            "average_last": self.average_last >= 0,
        })


def normalize2(x: torch.Tensor) -> torch.Tensor:
    """The paper's two-step normalisation per sample: standardise, then min-max to [0, 1]."""
    dims = tuple(range(1, x.ndim))
    x = (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-8)
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo + 1e-8)


def make_optimizers(g_params, d_params, config: GANrecConfig, fused: bool = False,
                    eps: float = 1e-8) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for the generator and the discriminator (fused kernels when asked and available)."""

    def adam(params, lr):
        params = list(params)
        if fused:
            try:
                return torch.optim.Adam(params, lr=lr, betas=config.betas, eps=eps, fused=True)
            except (RuntimeError, TypeError):  # fused kernels not available for these parameters
                pass
        return torch.optim.Adam(params, lr=lr, betas=config.betas, eps=eps)

    return adam(g_params, config.lr_g), adam(d_params, config.lr_d)


def _to_host(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_host(v) for v in obj]
    return copy.deepcopy(obj)


class GANrec(Stage):
    """GANrec on a batch of sinograms that share one geometry (see the module docstring).

    Losses: ``g_loss`` (the generator's ``gan_weight * adv + l1_weight * l1``), ``d_loss`` (the
    discriminator's), ``l1`` (between normalised sinograms), ``adv``, ``recovered`` (1 on an
    iteration that restored a snapshot).
    """

    name = "ganrec"
    label = "GANrec"
    monitor = "l1"

    def __init__(self, projector, sinograms, config: GANrecConfig | None = None, *, x0=None, seed=0,
                 acceleration=None):
        super().__init__(projector, sinograms, config or GANrecConfig(), x0=x0)
        cfg = self.config
        n = projector.n_det
        residual = x0 is not None
        self.acc = resolve_acceleration(acceleration, self.device, residual_generator=residual)
        if self.acc.cpu_heap:
            keep_cpu_heap()
        b = self.b
        self.scale = b.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
        self.b_norm = normalize2(b)
        self.net_input = self.b_norm.unsqueeze(1)
        mask = self.mask if cfg.circle else torch.ones_like(self.mask)
        self.mask = mask.expand(self.batch, n, n).contiguous()
        self.init_image = None
        if residual:
            with torch.no_grad():
                x = x0.to(self.device, torch.float32).clamp(min=0) * self.mask
                xs = torch.quantile(x.reshape(self.batch, -1), 0.99, dim=1).view(-1, 1, 1)
                self.init_image = (x / xs.clamp(min=1e-12)).contiguous()
        units = cfg.units or (128 if n <= 128 else 256)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(seed) + 1)
        with torch.random.fork_rng(devices=[] if self.device.type != "cuda" else [self.device]):
            torch.manual_seed(int(seed))
            self.G = Generator(
                projector.n_angles, n, units=units, dropout=cfg.dropout, channels=cfg.channels,
                kernel=cfg.kernel, n_conv=cfg.n_conv, output="linear", output_bias=0.1,
                dropout_generator=self._gen, zero_last=residual,
            ).to(self.device)
            self.D = Discriminator(cfg.disc_channels, spectral_norm=cfg.spectral_norm).to(self.device)
        if self.acc.channels_last:
            self.G.use_channels_last()
            if self.device.type == "cpu":  # measured on the CPU only
                self.D.use_channels_last()
        self.opt_g, self.opt_d = make_optimizers(self.G.parameters(), self.D.parameters(), cfg,
                                                 fused=self.acc.fused_adam)
        self._run_g = CompiledOrEager(self.G, self.acc.compile, self.acc.compile_backend, "generator")
        self._backward_ok = False  # a compiled generator's backward has run once
        self._bad: torch.Tensor | None = None  # non-finite losses since the last host check
        self._checked_at = 0
        self._snapshot_at = 0
        self.lr_scale = 1.0
        self.recoveries = 0
        self._bce = nn.BCEWithLogitsLoss()
        self._avg = RunningMean(cfg.average_last)
        self._snapshot = self._take_snapshot()

    # ------------------------------------------------------------------ state
    def _take_snapshot(self) -> dict:
        return {"iteration": self.iteration, "G": copy.deepcopy(self.G.state_dict()),
                "D": copy.deepcopy(self.D.state_dict()), "opt_g": copy.deepcopy(self.opt_g.state_dict()),
                "opt_d": copy.deepcopy(self.opt_d.state_dict())}

    def _restore_snapshot(self) -> None:
        self.iteration = self._snapshot["iteration"]
        self.G.load_state_dict(self._snapshot["G"])
        self.D.load_state_dict(self._snapshot["D"])
        self.opt_g.load_state_dict(self._snapshot["opt_g"])
        self.opt_d.load_state_dict(self._snapshot["opt_d"])

    def _set_lr(self) -> None:
        for group in self.opt_g.param_groups:
            group["lr"] = self.config.lr_g * self.lr_scale
        for group in self.opt_d.param_groups:
            group["lr"] = self.config.lr_d * self.lr_scale

    def _weights(self) -> tuple[dict, dict, dict, dict]:
        """Generator, discriminator and optimiser states of one network (the stacked solver
        overrides this with its last slice's)."""
        return self.G.state_dict(), self.D.state_dict(), self.opt_g.state_dict(), self.opt_d.state_dict()

    def state(self, host: bool = True) -> dict:
        """The networks' and optimisers' weights (CPU copies when ``host``), to warm-start a run."""
        self.check()  # no non-finite iterate passes on
        g, d, og, od = self._weights()
        out = {"stage": self.name, "iteration": self.iteration, "lr_scale": self.lr_scale,
               "sino_shape": tuple(self.projector.geometry.sino_shape),
               "arch": {k: getattr(self.config, k) for k in _ARCH}, "residual": self.init_image is not None,
               "generator": g, "discriminator": d, "opt_g": og, "opt_d": od}
        return {k: _to_host(v) for k, v in out.items()} if host else out

    def check_state(self, state) -> None:
        """Raise ``ValueError`` unless ``state`` fits this stage's sinogram shape and networks."""
        self._check_state(state)
        if tuple(state["sino_shape"]) != tuple(self.projector.geometry.sino_shape):
            raise ValueError(f"warm_start was made for sinograms of shape {tuple(state['sino_shape'])}, "
                             f"not {self.projector.geometry.sino_shape}")
        for key in _ARCH:
            if state["arch"][key] != getattr(self.config, key):
                raise ValueError(f"warm_start has another network architecture ({key} differs)")
        g, d, _, _ = self._weights()
        for net, mine in (("generator", g), ("discriminator", d)):
            theirs = state[net]
            for name, tensor in mine.items():
                if name not in theirs or tuple(theirs[name].shape) != tuple(tensor.shape):
                    got = tuple(theirs[name].shape) if name in theirs else "nothing"
                    raise ValueError(f"warm_start's {net} holds {got} for {name!r}, where this version's "
                                     f"has {tuple(tensor.shape)} (a state of another version?)")

    def load_state(self, state) -> None:
        """Continue from :meth:`state` (same sinogram shape and network architecture).

        Raises
        ------
        ValueError
            When the state was made for another stage, sinogram shape or architecture.
        """
        self.check_state(state)
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.lr_scale = float(state["lr_scale"])
        self._set_lr()
        self._snapshot = self._take_snapshot()

    # ------------------------------------------------------------------ one iteration
    def _candidate(self) -> torch.Tensor:
        """The generator's image ``(B, n, n)``, normalised and masked."""
        amp = self.acc.amp_dtype
        with torch.autocast(self.device.type, dtype=amp) if amp is not None else nullcontext():
            out = self._run_g(self.net_input)
        out = out[:, 0].float()
        if self.init_image is not None:
            out = torch.relu(out + self.init_image)
        return normalize2(out * self.mask) * self.mask

    def _model_sino(self, candidate: torch.Tensor) -> torch.Tensor:
        return normalize2(self.projector.forward(candidate))

    def step(self) -> Losses:
        """One GANrec iteration: discriminator update(s), then the generator update."""
        self.G.train()
        candidate = self._candidate()
        model = self._model_sino(candidate)
        d_loss = self._discriminator_update(model)
        g_loss, l1, adv = self._generator_loss(model)
        bad = ~(torch.isfinite(g_loss) & torch.isfinite(d_loss))
        self._bad = bad if self._bad is None else self._bad | bad
        if self.acc.check_every == 1 and self.check():  # the CPU path: nothing is updated
            return self._recovered_losses()
        params = [p for p in self.G.parameters() if p.requires_grad]
        grads = self._generator_grads(g_loss, params)
        if grads is None:  # the compiled backward failed to build: the generator again, eagerly
            g_loss, l1, adv = self._generator_loss(self._model_sino(self._candidate()))
            grads = torch.autograd.grad(g_loss, params)
        for p, gr in zip(params, grads):
            p.grad = gr
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.iteration += 1
        self._avg.add(candidate.detach())
        if self.iteration - self._checked_at >= self.acc.check_every and self.check():
            return self._recovered_losses()
        return Losses({"g_loss": g_loss, "d_loss": d_loss, "l1": l1, "adv": adv, "recovered": 0.0})

    def _discriminator_update(self, model: torch.Tensor) -> torch.Tensor:
        """``d_steps`` updates of the discriminator on measured vs (detached) modelled sinograms."""
        real = self.b_norm.unsqueeze(1)
        fake = model.detach().unsqueeze(1)
        d_loss = torch.zeros((), device=self.device)
        for _ in range(self.config.d_steps):
            logits_real, logits_fake = self._real_fake_logits(real, fake)
            d_loss = self._bce(logits_real, torch.ones_like(logits_real)) + self._bce(
                logits_fake, torch.zeros_like(logits_fake))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()  # a non-finite loss is caught by the next check
            self.opt_d.step()
        return d_loss

    def _real_fake_logits(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's logits of the measured and the modelled sinograms, from one batch
        (the same per-sample result as two calls, with half the calls)."""
        return self.D(torch.cat([real, fake])).chunk(2)

    def _generator_loss(self, model: torch.Tensor):
        """``(gan_weight * adv + l1_weight * l1, l1, adv)``."""
        cfg = self.config
        l1 = (model - self.b_norm).abs().mean()
        logits = self.D(model.unsqueeze(1))
        adv = self._bce(logits, torch.ones_like(logits))
        return cfg.l1_weight * l1 + cfg.gan_weight * adv, l1, adv

    def _generator_grads(self, loss: torch.Tensor, params: list) -> tuple | None:
        """Gradients of ``loss``; None when a compiled generator's backward (compiled lazily, at
        its first use) fails, after which the generator runs eagerly."""
        if not self._run_g.compiled or self._backward_ok:
            return torch.autograd.grad(loss, params)
        try:
            grads = torch.autograd.grad(loss, params)
        except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - compiler errors of any kind
            self._run_g.fall_back(exc)
            return None
        self._backward_ok = True
        return grads

    def check(self) -> bool:
        """Read the finite check of the iterations since the last check (one host-device sync).

        Returns True when a non-finite loss was found: the last good snapshot was restored and the
        learning rates halved. A clean check takes a new snapshot every ``snapshot_every``
        iterations.

        Raises
        ------
        DivergenceError
            After more than ``max_recoveries`` recoveries.
        """
        bad, self._bad = self._bad, None
        if bad is not None and bool(bad):
            self._recover()
            return True
        self._checked_at = self.iteration
        if self.iteration - self._snapshot_at >= self.config.snapshot_every:
            self._snapshot = self._take_snapshot()
            self._snapshot_at = self.iteration
        return False

    def _recover(self) -> None:
        stale = self.iteration > self._checked_at  # unchecked iterates went into the average
        self.recoveries += 1
        if self.recoveries > self.config.max_recoveries:
            raise DivergenceError(f"GANrec diverged {self.recoveries} times (non-finite loss); lower lr_g/lr_d")
        self._restore_snapshot()
        self._checked_at = self._snapshot_at = self.iteration
        self.lr_scale *= 0.5
        self._set_lr()
        if stale:  # iterates of the failed stretch may be non-finite: the average starts again
            self._avg.reset()

    @staticmethod
    def _recovered_losses() -> Losses:
        nan = math.nan
        return Losses({"g_loss": nan, "d_loss": nan, "l1": nan, "adv": nan, "recovered": 1.0})

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def candidate(self) -> torch.Tensor:
        """The current candidate (normalised units), evaluated without dropout (or the average)."""
        if self._bad is not None:
            self.check()
        if self._avg.mean is not None:
            return self._avg.mean
        self.G.eval()
        try:
            return self._candidate()
        finally:
            self.G.train()

    def _ls_factor(self, c: torch.Tensor) -> torch.Tensor:
        ac = self.projector.forward(c)
        num = (ac * self.b).sum(dim=(1, 2))
        den = (ac * ac).sum(dim=(1, 2)).clamp(min=1e-20)
        return (num / den).view(-1, 1, 1)

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """The reconstruction ``(B, n, n)`` in the sinogram's units per pixel: the candidate ``c``
        scaled per slice by ``<A c, b> / <A c, A c>``."""
        c = self.candidate()
        return c * self._ls_factor(c)

    @torch.no_grad()
    def uncertainty(self) -> torch.Tensor | None:
        std = self._avg.std()
        return None if std is None else std * self._ls_factor(self._avg.mean)

    def close(self) -> None:
        """Free the networks and optimisers (and cached GPU memory)."""
        for name in ("G", "D", "opt_g", "opt_d", "_snapshot", "init_image"):
            setattr(self, name, None)
        self._avg.reset()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


