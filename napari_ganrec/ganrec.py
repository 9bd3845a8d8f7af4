"""The GANrec solver: configuration, one iteration, snapshots and warm starts.

One :class:`GANrecSolver` fits a generator so that the Radon transform of its output matches the
measured sinogram(s), against a discriminator that tells measured from modelled sinograms (Yang et
al. 2020, eq. 1-3). What differs from the authors' code, on purpose:

- each network gets only its own gradients (the discriminator step sees a detached candidate; the
  generator step differentiates with respect to the generator's parameters only);
- the discriminator learns (its learning rate is not 100x below the generator's);
- NaN never escapes: a non-finite loss restores the last good snapshot, halves the learning rates
  and goes on (:class:`DivergenceError` after ``max_recoveries``); on a GPU the finite check is read
  once every ``check_every`` iterations (:mod:`~napari_ganrec.acceleration`), so the device is not
  made to wait for the host every iteration;
- options live in one frozen :class:`GANrecConfig`; nothing mutates module state;
- the result is quantitative (sinogram units per pixel): the normalised candidate is rescaled by the
  least-squares factor that makes its projection match the data.

Presets: ``"paper"`` is the published configuration (two-step normalisation of the candidate,
GAN loss + lambda L1, dropout). ``"default"`` is what reconstructs best in
``benchmarks/quality.py`` (docs/experiments.md): the candidate in image units, fitted to the data
under an iteratively reweighted TV prior (log penalty), first by fast primal-dual steps on the image
(``prior_iterations``), then by the generator as a residual on top of it; no adversarial term (it
cost SSIM in every test). ``"noisy"`` is the default with a stronger prior for photon-starved data;
``"fast"`` a narrow L1-only network for previews.

Modes: with ``normalize_candidate=True`` (paper) the candidate and the model sinogram are normalised
and the image is rescaled at the end; with ``False`` (raw) the generator's output times an image
scale (99th percentile of the FBP) is the image, the data term is ``0.5 ||A x - b||^2`` and
``tv_weight`` means what it means for ``classical.tv_iter``.
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
from torch import nn

from .acceleration import Acceleration, CompiledOrEager, Losses, keep_cpu_heap, resolve_acceleration
from .classical import _div, _grad
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
        Average the candidates of the last this-many iterations in the result (0: off); their
        spread is :meth:`GANrecSolver.uncertainty`.
    tv_eps : float
        0: the TV penalty is total variation. > 0: the non-convex ``eps * log(1 + |grad x| / eps)``
        (in units of the image scale), which keeps edges and small pores sharper.
    init : {"none", "fbp", "sirt", "tv"}
        Raw mode only: the candidate is ``init image + generator output``, the generator's last
        layer starting at 0, so the first candidate is the classical image.
    init_iterations : int
        Iterations of SIRT/TV for the initial image.
    init_tv_weight : float or None
        Dimensionless TV weight of the initial image (None: ``tv_weight``).
    support : bool
        Pixels crossed by a ray that measured (nearly) nothing are held at 0.
    lr_decay : float
        Learning rates decay as ``lr / (1 + iteration / lr_decay)`` (0: constant).
    prior_iterations : int
        Raw mode: the first this-many iterations update the candidate image directly by
        preconditioned primal-dual steps on ``0.5 ||A x - b||^2 + lam TV_w(x)``, ``x >= 0`` (the
        sparsity prior, fast); the generator then fits a residual on top of that image.
    reweight_every : int
        Every this-many prior iterations the TV weights become ``eps / (eps + |grad x| / s)``
        (iteratively reweighted TV, i.e. the log penalty of ``tv_eps``; ``s`` the image scale).
        0: plain TV.
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
    tv_eps: float = 0.0
    init: str = "none"
    init_iterations: int = 100
    init_tv_weight: float | None = None
    support: bool = False
    lr_decay: float = 0.0
    prior_iterations: int = 0
    reweight_every: int = 0

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
            "tv_eps": self.tv_eps >= 0,
            "init_iterations": self.init_iterations >= 1,
            "lr_decay": self.lr_decay >= 0,
            "prior_iterations": self.prior_iterations >= 0,
            "reweight_every": self.reweight_every >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"GANrecConfig.{name} is out of range: {getattr(self, name)!r}")
        if self.units is not None and self.units < 1:
            raise ValueError(f"GANrecConfig.units must be positive, got {self.units}")
        if self.init not in ("none", "fbp", "sirt", "tv"):
            raise ValueError(f"GANrecConfig.init must be 'none', 'fbp', 'sirt' or 'tv', got {self.init!r}")
        if self.output not in ("linear", "relu", "softplus"):
            raise ValueError(f"GANrecConfig.output must be 'linear', 'relu' or 'softplus', got {self.output!r}")
        if self.prior_iterations and self.normalize_candidate:
            raise ValueError("GANrecConfig.prior_iterations needs normalize_candidate=False")
        if self.reweight_every and self.tv_eps <= 0:
            raise ValueError("GANrecConfig.reweight_every needs tv_eps > 0")
        if self.init != "none" and self.normalize_candidate:
            raise ValueError("GANrecConfig.init needs normalize_candidate=False (raw image output)")
        if self.init_tv_weight is not None and self.init_tv_weight < 0:
            raise ValueError(f"GANrecConfig.init_tv_weight must be >= 0, got {self.init_tv_weight}")
        if self.gan_weight + self.l1_weight + self.l2_weight == 0:
            raise ValueError("GANrecConfig: gan_weight, l1_weight and l2_weight are all 0: nothing to fit")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, GANrecConfig] = {
    # The published recipe: GAN + lambda * L1, two-step normalisation, dropout 0.25, layer norm.
    "paper": GANrecConfig(),
    # What wins in the quality benchmark (docs/experiments.md): the candidate is fitted in image
    # units to 0.5 ||A x - b||^2 + lam TV_w(x), x >= 0, where TV_w is iteratively reweighted TV
    # (the log penalty, eps 0.1 of the image scale, weights renewed every 100 iterations); the
    # first 2000 iterations are fast primal-dual steps on the image, then the generator fits a
    # residual on top of it (no adversarial term: it cost SSIM in every test). At 256 px it beats
    # the best-lambda TV on every limited-angle case (porous +-35: 0.77 vs 0.65; 0-90: 0.92 vs 0.81;
    # foam +-35: 0.86 vs 0.78; Shepp-Logan +-35: 0.86 vs 0.85) and at 0-120 (0.966 vs 0.964).
    "default": GANrecConfig(
        normalize_candidate=False, gan_weight=0.0, l1_weight=0.0, l2_weight=1.0, dropout=0.0,
        tv_weight=0.1, tv_eps=0.1, reweight_every=100, prior_iterations=2000, average_last=20,
        channels=16, n_conv=5,
    ),
    # Noisy data (e.g. 1e4 photons per pixel): a stronger, less edge-selective prior. Reweighting
    # with a small eps keeps noise edges. lam 0.3 (the best-lambda TV's weight too) and eps 1.0 beat
    # the best-lambda TV at 256 px, noisy 0-120: porous 0.849 vs 0.828, foam 0.796 vs 0.792
    # (eps 0.3: 0.831 / 0.784; eps 0.5: 0.841 / 0.793).
    "noisy": GANrecConfig(
        normalize_candidate=False, gan_weight=0.0, l1_weight=0.0, l2_weight=1.0, dropout=0.0,
        tv_weight=0.3, tv_eps=1.0, reweight_every=100, prior_iterations=2000, average_last=20,
        channels=16, n_conv=5,
    ),
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
    prior: dict | None = None  # image, duals and TV weights of the prior stage (CPU tensors)


def _normalize2(x: torch.Tensor) -> torch.Tensor:
    """The paper's two-step normalisation per sample: standardise, then min-max to [0, 1]."""
    dims = tuple(range(1, x.ndim))
    x = (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-8)
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo + 1e-8)


def _support_mask(projector: Projector, b_scaled: torch.Tensor, level: float = 0.01) -> torch.Tensor:
    """``(B, n, n)`` 0/1: 0 where a ray (and two neighbours each side) measured less than ``level``.

    ``b_scaled`` is the sinogram divided by its maximum. The margin of two bins keeps pixels that
    the object only partly fills.
    """
    near = torch.nn.functional.max_pool1d(
        b_scaled.abs().reshape(-1, 1, b_scaled.shape[-1]), 5, stride=1, padding=2
    ).reshape(b_scaled.shape)
    empty = (near < level).float()
    seen = projector.adjoint(empty)
    return (seen <= 1e-4).float()


def _pd_dual(y1, y2, sigma1, ax, b, xbar, lam_w, scale):
    """Dual updates of the prior stage, and its losses (pure, so that it can be compiled)."""
    y1 = (y1 + sigma1 * (ax - b)) / (1.0 + sigma1)
    y2 = y2 + 0.5 * _grad(xbar)
    norm = torch.sqrt((y2 * y2).sum(dim=1, keepdim=True))
    y2 = y2 / torch.clamp(norm / lam_w.clamp(min=1e-30), min=1.0)
    resid = (ax - b) / scale
    return y1, y2, 0.5 * (resid * resid).mean(), resid.abs().mean()


def _pd_primal(x, tau, aty1, y2, mask):
    """Primal update (projected on x >= 0 and the mask) and the extrapolated point."""
    x_new = (x - tau * (aty1 - _div(y2))).clamp(min=0) * mask
    return x_new, 2 * x_new - x


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
    acceleration : Acceleration or dict, optional
        Mixed precision, channels-last, ``torch.compile`` and host-check interval
        (:class:`~napari_ganrec.acceleration.Acceleration`; default: automatic per device).
    """

    def __init__(
        self,
        projector: Projector,
        sinograms: torch.Tensor,
        config: GANrecConfig | None = None,
        seed: int = 0,
        warm_start: SolverState | None = None,
        acceleration: Acceleration | dict | None = None,
    ):
        self.config = config = config or PRESETS["default"]
        self.projector = projector
        self.device = projector.device
        self.acc = resolve_acceleration(
            acceleration, self.device,
            residual_generator=config.init != "none" or config.prior_iterations > 0)
        if self.acc.cpu_heap:
            keep_cpu_heap()
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
        self.mask = torch.from_numpy(mask).to(self.device, torch.float32).expand(self.batch, n, n)
        if config.support:
            self.mask = self.mask * _support_mask(projector, self.b_scaled)
        self.mask = self.mask.contiguous()
        self.x_scale = torch.ones_like(self.scale)
        self.init_image: torch.Tensor | None = None
        if not config.normalize_candidate:
            with torch.no_grad():
                self.x_scale, self.init_image = self._raw_setup(b)
        # raw-mode weights: 0.5 ||A x - b||^2 + lam TV(x) divided by scale^2 * n_data, with the
        # dimensionless TV weight of classical.tv_iter (so the same number means the same thing)
        a_over_d = projector.n_angles / projector.n_det
        self._tv_k = (b.abs().mean(dim=(1, 2), keepdim=True) / self.scale * a_over_d
                      * self.x_scale / self.scale).view(-1)
        self._adv_ref = float(0.5 * (self.b_scaled**2).mean())
        units = config.units or (128 if n <= 128 else 256)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(seed) + 1)
        residual = config.init != "none" or config.prior_iterations > 0
        with torch.random.fork_rng(devices=[] if self.device.type != "cuda" else [self.device]):
            torch.manual_seed(int(seed))
            self.G = Generator(
                projector.n_angles, n, units=units, dropout=config.dropout, channels=config.channels,
                kernel=config.kernel, n_conv=config.n_conv,
                output="linear" if residual else config.output,
                output_bias=0.1, dropout_generator=self._gen, zero_last=residual,
            ).to(self.device)
            self.D = Discriminator(config.disc_channels, spectral_norm=config.spectral_norm).to(self.device)
        if self.acc.channels_last:
            self.G.use_channels_last()
        self.opt_g = self._adam(self.G.parameters(), config.lr_g)
        self.opt_d = self._adam(self.D.parameters(), config.lr_d)
        self._run_g = CompiledOrEager(self.G, self.acc.compile, self.acc.compile_backend, "generator")
        self._pd_dual = CompiledOrEager(_pd_dual, self.acc.compile, self.acc.compile_backend,
                                        "prior-stage dual update")
        self._pd_primal = CompiledOrEager(_pd_primal, self.acc.compile, self.acc.compile_backend,
                                          "prior-stage primal update")
        self._backward_ok = False  # a compiled generator's backward has run once
        self._bad: torch.Tensor | None = None  # non-finite losses since the last host check
        self._checked_at = 0
        self._snapshot_at = 0
        self.iteration = 0
        self.lr_scale = 1.0
        self.recoveries = 0
        self._bce = nn.BCEWithLogitsLoss()
        self._warm_prior: dict | None = None
        if warm_start is not None:
            self.load_state(warm_start)
        self._snapshot = self._take_snapshot()
        self._last_candidate: torch.Tensor | None = None
        self._avg: torch.Tensor | None = None
        self._var: torch.Tensor | None = None
        self._avg_count = 0
        self._pd: dict | None = None
        if config.prior_iterations > 0:
            self._pd_setup()

    def _adam(self, params, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
        if self.acc.fused_adam:
            try:
                return torch.optim.Adam(params, lr=lr, betas=self.config.betas, eps=eps, fused=True)
            except (RuntimeError, TypeError):  # fused kernels not available for these parameters
                pass
        return torch.optim.Adam(params, lr=lr, betas=self.config.betas, eps=eps)

    # ------------------------------------------------------------------ sparsity prior stage
    def _pd_setup(self) -> None:
        """State of the primal-dual (Chambolle-Pock, diagonal preconditioning) prior stage."""
        from .classical import _safe_inverse, tv_weight_scale

        cfg = self.config
        n = self.projector.n_det
        b = self.b_scaled * self.scale
        x = (self.init_image * self.x_scale).clone() if self.init_image is not None else (
            torch.zeros(self.batch, n, n, device=self.device))
        lam = cfg.tv_weight * tv_weight_scale(b)
        self._pd = {
            "b": b,
            "x": x,
            "xbar": x.clone(),
            "y1": torch.zeros_like(b),
            "y2": torch.zeros(self.batch, 2, n, n, device=self.device),
            "lam": lam.view(-1, 1, 1, 1),
            "w": torch.ones(self.batch, 1, n, n, device=self.device),
            "sigma1": _safe_inverse(self.projector.row_sums()),
            "tau": 1.0 / (self.projector.col_sums() + 4.0),
        }
        warm = self._warm_prior
        if warm:  # continue from an earlier run's image (e.g. the previous slice of a volume)
            same = warm["x"].shape[0] == self.batch
            for key in ("x", "y1", "y2", "w"):
                if key in warm:
                    v = warm[key].to(self.device, torch.float32)
                    if not same:  # another batch size: every slice starts from the last one
                        v = v[-1:].expand(self.batch, *v.shape[1:])
                    self._pd[key] = v.clone()
            self._pd["x"] = self._pd["x"] * self.mask
            self._pd["xbar"] = self._pd["x"].clone()
            self._warm_prior = None

    @torch.no_grad()
    def _pd_step(self) -> Losses:
        cfg, st = self.config, self._pd
        ax = self.projector.forward(st["xbar"])
        st["y1"], st["y2"], l2, l1 = self._pd_dual(st["y1"], st["y2"], st["sigma1"], ax, st["b"],
                                                  st["xbar"], st["lam"] * st["w"], self.scale)
        x_new, st["xbar"] = self._pd_primal(st["x"], st["tau"], self.projector.adjoint(st["y1"]),
                                            st["y2"], self.mask)
        st["x"] = x_new
        self.iteration += 1
        k = self.iteration
        if cfg.reweight_every and k % cfg.reweight_every == 0:
            g = torch.sqrt((_grad(x_new) ** 2).sum(dim=1, keepdim=True))
            eps = cfg.tv_eps * self.x_scale.view(-1, 1, 1, 1)
            st["w"] = eps / (g + eps)
        self._accumulate(x_new / self.x_scale)
        if k == cfg.prior_iterations:  # hand over to the generator: it fits a residual
            self.init_image = (x_new / self.x_scale).contiguous()
            self._pd = None
            self._snapshot = self._take_snapshot()
            self._checked_at = self._snapshot_at = k
        return Losses({"g_loss": l2, "d_loss": 0.0, "l1": l1, "adv": 0.0, "recovered": 0.0})

    def _accumulate(self, c: torch.Tensor) -> None:
        self._last_candidate = c
        if not self.config.average_last:
            return
        if self._avg is None:
            self._avg, self._var = c.clone(), torch.zeros_like(c)
        else:
            a = 1.0 / min(self._avg_count + 1, self.config.average_last)
            delta = c - self._avg
            self._avg = self._avg + a * delta
            self._var = (1 - a) * (self._var + a * delta * delta)
        self._avg_count += 1

    def _raw_setup(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image scale (99th percentile of the FBP, data units per pixel) and the initial image."""
        from .classical import fbp, sirt_iter, tv_iter

        cfg = self.config
        x_fbp = (fbp(self.projector, b) * self.mask).clamp(min=0)
        flat = x_fbp.reshape(self.batch, -1)
        xs = torch.quantile(flat, 0.99, dim=1).view(-1, 1, 1)
        fallback = self.scale / self.projector.n_det
        xs = torch.where(xs > 1e-6 * fallback, xs, fallback)
        if cfg.init == "none":
            return xs, None
        if cfg.init == "fbp":
            x0 = x_fbp
        else:
            if cfg.init == "sirt":
                it = sirt_iter(self.projector, b, cfg.init_iterations)
            else:
                w = cfg.init_tv_weight if cfg.init_tv_weight is not None else (cfg.tv_weight or 0.03)
                it = tv_iter(self.projector, b, cfg.init_iterations, tv_weight=w)
            for _, x0, _ in it:
                x0 = x0 * self.mask
        return xs, (x0 * self.mask / xs).contiguous()

    # ------------------------------------------------------------------ state
    def _take_snapshot(self) -> dict:
        return {
            "iteration": getattr(self, "iteration", 0),
            "G": copy.deepcopy(self.G.state_dict()),
            "D": copy.deepcopy(self.D.state_dict()),
            "opt_g": copy.deepcopy(self.opt_g.state_dict()),
            "opt_d": copy.deepcopy(self.opt_d.state_dict()),
        }

    def _restore_snapshot(self) -> None:
        self.iteration = self._snapshot.get("iteration", self.iteration)
        self.G.load_state_dict(self._snapshot["G"])
        self.D.load_state_dict(self._snapshot["D"])
        self.opt_g.load_state_dict(self._snapshot["opt_g"])
        self.opt_d.load_state_dict(self._snapshot["opt_d"])

    def _set_lr(self) -> None:
        decay = 1.0
        if self.config.lr_decay > 0:
            decay = 1.0 / (1.0 + getattr(self, "iteration", 0) / self.config.lr_decay)
        for group in self.opt_g.param_groups:
            group["lr"] = self.config.lr_g * self.lr_scale * decay
        for group in self.opt_d.param_groups:
            group["lr"] = self.config.lr_d * self.lr_scale * decay

    def state(self) -> SolverState:
        """A CPU copy of the weights and optimiser states, to warm-start another run."""
        self.check()
        return SolverState(
            config=self.config,
            sino_shape=self.projector.geometry.sino_shape,
            generator=_to_cpu(self.G.state_dict()),
            discriminator=_to_cpu(self.D.state_dict()),
            opt_g=_optim_to_cpu(self.opt_g.state_dict()),
            opt_d=_optim_to_cpu(self.opt_d.state_dict()),
            iteration=self.iteration,
            lr_scale=self.lr_scale,
            prior=self._prior_state(),
        )

    def _prior_state(self) -> dict | None:
        if not self.config.prior_iterations:
            return None
        if self._pd is not None:
            st = self._pd
            return {k: st[k].detach().cpu().clone() for k in ("x", "y1", "y2", "w")}
        if self.init_image is None:
            return None
        return {"x": (self.init_image * self.x_scale).detach().cpu().clone()}

    def check_state(self, state: SolverState) -> None:
        """Raise ``ValueError`` unless ``state`` fits this solver's sinogram shape and networks."""
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

    def load_state(self, state: SolverState) -> None:
        """Continue from ``state`` (same sinogram shape and network architecture).

        Raises
        ------
        ValueError
            When the state was made for another sinogram shape or architecture.
        """
        self.check_state(state)
        self.G.load_state_dict(state.generator)
        self.D.load_state_dict(state.discriminator)
        self.opt_g.load_state_dict(state.opt_g)
        self.opt_d.load_state_dict(state.opt_d)
        self.lr_scale = state.lr_scale
        self._set_lr()
        self._warm_prior = state.prior

    # ------------------------------------------------------------------ one iteration
    def _candidate(self) -> torch.Tensor:
        """The generator's image ``(B, n, n)`` (normalised or scaled data units), masked."""
        amp = self.acc.amp_dtype
        with torch.autocast(self.device.type, dtype=amp) if amp is not None else nullcontext():
            out = self._run_g(self.net_input)
        out = out[:, 0].float()
        if self.init_image is not None:
            out = torch.relu(out + self.init_image)
        out = out * self.mask
        if self.config.normalize_candidate:
            out = _normalize2(out) * self.mask
        return out

    def _model_sino(self, candidate: torch.Tensor) -> torch.Tensor:
        s = self.projector.forward(candidate)
        if self.config.normalize_candidate:
            return _normalize2(s)
        return s * (self.x_scale / self.scale)

    def step(self) -> Losses:
        """One GANrec iteration (discriminator update(s), then generator update).

        Returns the losses, a mapping of floats read from the device on first access:
        ``g_loss``, ``d_loss``, ``l1``, ``adv``, ``recovered``. Every ``check_every`` iterations the
        host checks that all losses since the last check were finite; if not, the last good
        snapshot is restored, the learning rates are halved and ``recovered`` is 1.
        """
        cfg = self.config
        if self._pd is not None:
            return self._pd_step()
        self.G.train()
        candidate = self._candidate()
        model = self._model_sino(candidate)
        d_loss = self._discriminator_update(model)
        g_loss, l1, adv = self._generator_loss(candidate, model)
        bad = ~(torch.isfinite(g_loss) & torch.isfinite(d_loss))
        self._bad = bad if self._bad is None else self._bad | bad
        if self.acc.check_every == 1 and self.check():  # the CPU path: nothing is updated
            return self._recovered_losses()
        params = [p for p in self.G.parameters() if p.requires_grad]
        grads = self._generator_grads(g_loss, params)
        if grads is None:  # the compiled backward failed to build: the generator again, eagerly
            candidate = self._candidate()
            g_loss, l1, adv = self._generator_loss(candidate, self._model_sino(candidate))
            grads = torch.autograd.grad(g_loss, params)
        for p, gr in zip(params, grads):
            p.grad = gr
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.iteration += 1
        if cfg.lr_decay > 0:
            self._set_lr()
        self._accumulate(candidate.detach())
        if self.iteration - self._checked_at >= self.acc.check_every and self.check():
            return self._recovered_losses()
        return Losses({"g_loss": g_loss, "d_loss": d_loss, "l1": l1, "adv": adv, "recovered": 0.0})

    def _discriminator_update(self, model: torch.Tensor) -> torch.Tensor:
        """``d_steps`` updates of the discriminator on measured vs (detached) modelled sinograms."""
        cfg = self.config
        d_loss = torch.zeros((), device=self.device)
        if cfg.gan_weight <= 0:
            return d_loss
        real = self.b_norm.unsqueeze(1)
        fake_detached = model.detach().unsqueeze(1)
        for _ in range(cfg.d_steps):
            logits_real = self.D(real)
            logits_fake = self.D(fake_detached)
            d_loss = self._bce(logits_real, torch.ones_like(logits_real)) + self._bce(
                logits_fake, torch.zeros_like(logits_fake)
            )
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()  # a non-finite loss is caught by the next check
            self.opt_d.step()
        return d_loss

    def _generator_loss(self, candidate: torch.Tensor, model: torch.Tensor):
        """The generator's loss ``(total, l1, adv)``: data terms, adversarial term, (log-)TV."""
        cfg = self.config
        resid = model - self.b_norm
        l1 = resid.abs().mean()
        raw = not cfg.normalize_candidate
        g_loss = cfg.l1_weight * l1
        if cfg.l2_weight > 0:
            g_loss = g_loss + cfg.l2_weight * (0.5 if raw else 1.0) * (resid**2).mean()
        adv = torch.zeros((), device=self.device)
        if cfg.gan_weight > 0:
            logits = self.D(model.unsqueeze(1))
            adv = self._bce(logits, torch.ones_like(logits))
            g_loss = g_loss + cfg.gan_weight * (self._adv_ref if raw else 1.0) * adv
        if cfg.tv_weight > 0:
            g = _grad(candidate)
            mag = torch.sqrt((g**2).sum(dim=1) + 1e-8)
            if cfg.tv_eps > 0:
                mag = cfg.tv_eps * torch.log1p(mag / cfg.tv_eps)
            if raw:
                per_slice = mag.sum(dim=(1, 2)) * self._tv_k / resid[0].numel()
                g_loss = g_loss + cfg.tv_weight * per_slice.mean()
            else:
                g_loss = g_loss + cfg.tv_weight * mag.mean()
        return g_loss, l1, adv

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
        if self._pd is None and self.iteration - self._snapshot_at >= self.config.snapshot_every:
            self._snapshot = self._take_snapshot()
            self._snapshot_at = self.iteration
        return False

    def _recover(self) -> None:
        stale = self.iteration > self._checked_at  # unchecked iterates went into the average
        self.recoveries += 1
        if self.recoveries > self.config.max_recoveries:
            raise DivergenceError(
                f"GANrec diverged {self.recoveries} times (non-finite loss); lower lr_g/lr_d"
            )
        self._restore_snapshot()
        self._checked_at = self._snapshot_at = self.iteration
        self.lr_scale *= 0.5
        self._set_lr()
        if stale:  # iterates of the failed stretch may be non-finite: the average starts again
            self._avg = self._var = None
            self._avg_count = 0
            self._last_candidate = None

    @staticmethod
    def _recovered_losses() -> Losses:
        nan = math.nan
        return Losses({"g_loss": nan, "d_loss": nan, "l1": nan, "adv": nan, "recovered": 1.0})

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def candidate(self) -> torch.Tensor:
        """The current candidate (normalised units), evaluated without dropout."""
        if self._bad is not None:
            self.check()
        self.G.eval()
        try:
            if self.config.average_last and self._avg is not None:
                return self._avg
            if self._pd is not None:
                return self._pd["x"] / self.x_scale
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
            return (c * self.x_scale).clamp(min=0)
        ac = self.projector.forward(c)
        b = self.b_scaled * self.scale
        num = (ac * b).sum(dim=(1, 2))
        den = (ac * ac).sum(dim=(1, 2)).clamp(min=1e-20)
        return c * (num / den).view(-1, 1, 1)

    @torch.no_grad()
    def uncertainty(self) -> torch.Tensor:
        """Pixel-wise spread ``(B, n, n)`` of the last ``average_last`` candidates (std, image units).

        Where the iterates keep moving, the data do not pin the image down (e.g. along the missing
        wedge). Zero before two averaged iterations; needs ``average_last > 0``.
        """
        if self._var is None:
            return torch.zeros(self.batch, self.projector.n_det, self.projector.n_det,
                               device=self.device)
        std = self._var.clamp(min=0).sqrt()
        if self.config.normalize_candidate:
            return std * self.image(self._avg).amax(dim=(1, 2), keepdim=True) / self._avg.amax(
                dim=(1, 2), keepdim=True).clamp(min=1e-12)
        return std * self.x_scale

    @torch.no_grad()
    def residual(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """Model minus measured sinogram ``(B, A, D)`` in data units."""
        x = self.image() if image is None else image
        return self.projector.forward(x) - self.b_scaled * self.scale

    def close(self) -> None:
        """Free the networks and optimisers (and cached GPU memory)."""
        for name in ("G", "D", "opt_g", "opt_d", "_snapshot", "_avg", "_var", "_last_candidate",
                     "init_image", "_pd"):
            if hasattr(self, name):
                setattr(self, name, None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
