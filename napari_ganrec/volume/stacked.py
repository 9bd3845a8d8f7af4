"""GANrec with one generator and one discriminator per slice, stacked in one batch (``torch.vmap``).

``batch_mode="independent"``: the same arithmetic as separate runs per slice, done in one pass
(``"shared"`` is one network over the whole slab: the plain :class:`~napari_ganrec.methods.ganrec.GANrec`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..acceleration import CompiledOrEager
from ..methods.ganrec import GANrec, make_optimizers

__all__ = ["StackedGANrec"]


def _mangle(name: str) -> str:
    return name.replace(".", "__")


class _Stacked(nn.Module):
    """``copies`` independent instances of ``base`` evaluated in one batch with ``torch.vmap``.

    The input's first dimension is the copy index (one sample per copy). Parameters are stacked
    tensors ``(copies, ...)`` registered under mangled names, in the order of ``base``'s own, so
    that an optimiser over them is an independent optimiser per copy (Adam is element-wise).
    """

    def __init__(self, base: nn.Module, copies: int):
        super().__init__()
        object.__setattr__(self, "_base", base)  # not a submodule: its weights are not ours
        self.copies = int(copies)
        self._names = [name for name, _ in base.named_parameters()]
        for name, p in base.named_parameters():
            stacked = p.detach().unsqueeze(0).repeat(self.copies, *([1] * p.ndim)).clone()
            param = nn.Parameter(stacked, requires_grad=p.requires_grad)
            self.register_parameter(_mangle(name), param)
        if any(True for _ in base.buffers()):
            raise ValueError("independent batching does not support networks with buffers "
                             "(e.g. spectral_norm=True); use batch_mode='shared'")

    def train(self, mode: bool = True):
        super().train(mode)
        self._base.train(mode)
        return self

    def stacked(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, _mangle(name)) for name in self._names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self._base

        def one(params, xi):
            return torch.func.functional_call(base, params, (xi.unsqueeze(0),)).squeeze(0)

        return torch.vmap(one, randomness="different")(self.stacked(), x)

    # one network's weights <-> the stack
    def single_state(self, index: int = -1) -> dict[str, torch.Tensor]:
        return {name: t[index].detach() for name, t in self.stacked().items()}

    def load_single(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.stacked().items():
                t.copy_(state[name].to(t.device, t.dtype).unsqueeze(0).expand_as(t))


def _optim_single(opt_state: dict, index: int) -> dict:
    out = {"state": {}, "param_groups": [dict(g) for g in opt_state["param_groups"]]}
    for key, s in opt_state["state"].items():
        out["state"][key] = {
            k: (v[index].detach().clone() if torch.is_tensor(v) and v.ndim > 0 else
                (v.detach().clone() if torch.is_tensor(v) else v))
            for k, v in s.items()
        }
    return out


def _optim_broadcast(opt_state: dict, params: list[torch.Tensor]) -> dict:
    out = {"state": {}, "param_groups": [dict(g) for g in opt_state["param_groups"]]}
    for key, s in opt_state["state"].items():
        p = params[int(key)]
        out["state"][key] = {
            k: (v.to(p.device).unsqueeze(0).expand(p.shape[0], *v.shape).clone()
                if torch.is_tensor(v) and v.ndim > 0 else v)
            for k, v in s.items()
        }
    return out


class StackedGANrec(GANrec):
    """GANrec with one generator and one discriminator per slice, stacked in one batch.

    Same interface as :class:`~napari_ganrec.methods.ganrec.GANrec`. Every slice starts from the
    same weights (the ``seed``'s, or a warm start's single network); :meth:`state` holds the network
    of the last slice, so a warm start passes between shared and independent stages and between
    slabs of different sizes.
    """

    def __init__(self, projector, sinograms, config=None, *, x0=None, seed=0, acceleration=None):
        super().__init__(projector, sinograms, config, x0=x0, seed=seed, acceleration=acceleration)
        if self.config.spectral_norm:
            raise ValueError("batch_mode='independent' does not support spectral_norm=True")
        self.G.use_channels_last(False)  # vmap over stacked (5-D) weights: plain layout
        self.D.use_channels_last(False)
        self.G = _Stacked(self.G, self.batch).to(self.device)
        self.D = _Stacked(self.D, self.batch).to(self.device)
        self._run_g = CompiledOrEager(self.G, False, name="stacked generator")  # vmap: eager
        # The losses are means over the stack, so each network's gradient is its own divided by the
        # batch size B; Adam cancels the factor, exactly so with its eps divided by B too.
        self.opt_g, self.opt_d = make_optimizers(self.G.parameters(), self.D.parameters(), self.config,
                                                 fused=self.acc.fused_adam, eps=1e-8 / self.batch)
        self._set_lr()
        self._snapshot = self._take_snapshot()

    def _real_fake_logits(self, real, fake):
        return self.D(real), self.D(fake)  # the stack's first dimension is the slice

    def _weights(self):
        return (self.G.single_state(-1), self.D.single_state(-1),
                _optim_single(self.opt_g.state_dict(), -1), _optim_single(self.opt_d.state_dict(), -1))

    def load_state(self, state) -> None:
        """Start every slice's networks from one network's state."""
        self.check_state(state)
        self.G.load_single(state["generator"])
        self.D.load_single(state["discriminator"])
        self.opt_g.load_state_dict(_optim_broadcast(state["opt_g"], list(self.G.parameters())))
        self.opt_d.load_state_dict(_optim_broadcast(state["opt_d"], list(self.D.parameters())))
        self.lr_scale = float(state["lr_scale"])
        self._set_lr()
        self._snapshot = self._take_snapshot()
