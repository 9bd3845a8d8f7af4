"""What every method is: a :class:`Stage` over a batch of sinograms, and its small config.

A stage is built once for a projector and a batch ``(B, n_angles, n_det)`` of sinograms (a torch
tensor on the projector's device), optionally from an initial image ``x0`` ``(B, n, n)`` in the
sinogram's units per pixel (the previous stage's result in a chain). Then:

- :meth:`Stage.step` does one iteration and returns its losses (a mapping of floats);
- :meth:`Stage.image` is the current reconstruction ``(B, n, n)``, sinogram units per pixel;
- :meth:`Stage.state` / :meth:`Stage.load_state` carry everything the stage needs to continue
  (a plain dict of tensors), e.g. to warm-start the next slice of a volume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ..geometry import circle_mask
from ..projector import Projector

__all__ = ["Stage", "StageConfig", "check_fields", "tensors_to"]


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """Base of the per-method configs (frozen dataclasses; ``replace`` derives one)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_angles(self, angles_deg) -> None:
        """Raise ``ValueError`` when the method cannot run on these projection angles (degrees);
        called for every stage of a chain before the first one starts. Any angles suit by default."""


def check_fields(config: StageConfig, checks: Mapping[str, bool]) -> None:
    """Raise ``ValueError`` naming the first field whose check is False."""
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"{type(config).__name__}.{name} is out of range: {getattr(config, name)!r}")


def tensors_to(state: Mapping[str, Any], device: torch.device | str | None) -> dict:
    """A copy of ``state`` whose tensors are detached clones on ``device`` (None: where they are)."""
    out = {}
    for k, v in state.items():
        if torch.is_tensor(v):
            v = v.detach()
            out[k] = v.to(device).clone() if device is not None else v.clone()
        else:
            out[k] = v
    return out


class Stage:
    """One method on a batch of sinograms that share a geometry (see the module docstring).

    Parameters
    ----------
    projector : Projector
        Built once for the geometry.
    sinograms : torch.Tensor
        ``(B, n_angles, n_det)`` line integrals on the projector's device.
    config : StageConfig
        The method's options.
    x0 : torch.Tensor, optional
        Initial image ``(B, n, n)`` (sinogram units per pixel).
    seed : int
        Seed of anything random (network initialisation, dropout).
    acceleration : Acceleration or dict, optional
        Execution options (used by the stages that have a network).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    iterative: ClassVar[bool] = True
    #: The loss that early stopping watches.
    monitor: ClassVar[str] = "residual"

    def __init__(self, projector: Projector, sinograms: torch.Tensor, config: StageConfig, *,
                 x0: torch.Tensor | None = None, seed: int = 0, acceleration=None):
        if sinograms.ndim != 3 or tuple(sinograms.shape[1:]) != projector.geometry.sino_shape:
            raise ValueError(
                f"sinograms must be (B, {projector.n_angles}, {projector.n_det}), got {tuple(sinograms.shape)}")
        self.projector = projector
        self.device = projector.device
        self.config = config
        self.b = sinograms.to(self.device, torch.float32)
        self.batch = int(self.b.shape[0])
        n = projector.n_det
        if x0 is not None and tuple(x0.shape) != (self.batch, n, n):
            raise ValueError(f"x0 must be ({self.batch}, {n}, {n}), got {tuple(x0.shape)}")
        self.mask = torch.from_numpy(circle_mask(n)).to(self.device, torch.float32)
        self.iteration = 0

    def step(self) -> Mapping[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def image(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def uncertainty(self) -> torch.Tensor | None:
        """Pixel-wise spread of the last iterates (image units), where the stage averages them."""
        return None

    #: the tensor attributes (with a batch dimension) that :meth:`state` saves and :meth:`load_state` restores
    _KEYS: tuple[str, ...] = ()

    def state(self, host: bool = True) -> dict:
        """What the stage needs to continue (tensors on the CPU when ``host``)."""
        out = {"stage": self.name, "iteration": self.iteration}
        for k in self._KEYS:
            v = getattr(self, k).detach()
            out[k] = v.cpu().clone() if host else v.clone()
        return out

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` of a stage of the same method (e.g. the previous slice's)."""
        self._check_state(state)
        for k in self._KEYS:
            setattr(self, k, self._batch_tensor(state[k]))

    def check(self) -> bool:
        """Read any pending finite check; True when a recovery happened (network stages)."""
        return False

    def close(self) -> None:
        """Free what the stage holds."""

    # helpers -------------------------------------------------------------------------------
    def _check_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("stage") != self.name:
            got = state.get("stage") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"warm_start holds the state of {got!r}, not of the {self.name!r} stage")

    def _batch_tensor(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` (a state tensor with a batch dimension) on this device and batch size: a
        state from another batch size gives every slice its last slice's."""
        v = value.to(self.device, torch.float32)
        if v.shape[0] != self.batch:
            v = v[-1:].expand(self.batch, *v.shape[1:])
        return v.clone()
