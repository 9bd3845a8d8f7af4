"""Filtered back projection: one step, weighted by each angle's interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..projector import Projector
from .base import Stage, StageConfig

__all__ = ["FILTERS", "FBPConfig", "FBP", "fbp", "fourier_filter"]

FILTERS = ("ramp", "shepp-logan", "cosine", "hann", "hamming")


@dataclass(frozen=True)
class FBPConfig(StageConfig):
    """Options of FBP.

    Attributes
    ----------
    filter_name : str
        ``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hann"`` or ``"hamming"``.
    """

    filter_name: str = "ramp"

    def __post_init__(self):
        if self.filter_name not in FILTERS:
            raise ValueError(f"filter_name must be one of {FILTERS}, got {self.filter_name!r}")


def fourier_filter(size: int, name: str = "ramp") -> np.ndarray:
    """The FBP filter in Fourier space for a padded length ``size`` (as scikit-image builds it).

    The ramp is the Fourier transform of the band-limited spatial ramp (Kak & Slaney), so its
    zero frequency is right; the others multiply it by a window.
    """
    if name not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {name!r}")
    k = np.concatenate((np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)))
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * k) ** 2
    filt = 2.0 * np.real(np.fft.fft(h))
    if name == "shepp-logan":
        omega = np.pi * np.fft.fftfreq(size)[1:]
        filt[1:] *= np.sin(omega) / omega
    elif name == "cosine":
        freq = np.linspace(0, np.pi, size, endpoint=False)
        filt *= np.fft.fftshift(np.sin(freq))
    elif name == "hamming":
        filt *= np.fft.fftshift(np.hamming(size))
    elif name == "hann":
        filt *= np.fft.fftshift(np.hanning(size))
    return filt


def fbp(projector: Projector, sino: torch.Tensor, filter_name: str = "ramp") -> torch.Tensor:
    """Filtered back projection of ``(B, A, D)`` sinograms, weighted by each angle's interval.

    Non-uniform and limited angular ranges are handled by weighting each projection with the
    angular interval it stands for (:meth:`Geometry.angular_weights`).
    """
    geo = projector.geometry
    n = geo.n_det
    size = max(64, int(2 ** np.ceil(np.log2(2 * n))))
    filt = torch.as_tensor(fourier_filter(size, filter_name), dtype=torch.float32, device=sino.device)
    padded = torch.nn.functional.pad(sino, (0, size - n))
    filtered = torch.fft.ifft(torch.fft.fft(padded, dim=-1) * filt, dim=-1).real[..., :n]
    # scikit-image scales by pi / (2 * n_angles) with a filter of twice the ramp: per angle that is
    # half the angular interval, i.e. 0.5 * weight.
    w = torch.as_tensor(0.5 * geo.angular_weights(), dtype=torch.float32, device=sino.device)
    return projector.adjoint(filtered * w.view(1, -1, 1))


class FBP(Stage):
    """FBP as a stage: its one :meth:`step` computes the image (an initial image is ignored)."""

    name = "fbp"
    label = "FBP"
    iterative = False

    def __init__(self, projector, sinograms, config: FBPConfig | None = None, *, x0=None, seed=0,
                 acceleration=None):
        super().__init__(projector, sinograms, config or FBPConfig(), x0=x0)
        self._x: torch.Tensor | None = None

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        self._x = fbp(self.projector, self.b, self.config.filter_name) * self.mask
        self.iteration += 1
        return {}

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        if self._x is None:
            self.step()
        return self._x

    def close(self) -> None:
        self._x = None
