"""GANrec networks: the sinogram-to-image generator and the sinogram discriminator.

Following Yang et al. (2020), Fig. 2: the generator flattens the sinogram, maps it through four fully
connected layers (Softplus, layer normalisation, dropout) to an ``n x n`` image, and refines it with
nine convolutional layers (ReLU, layer normalisation); the discriminator is four stride-2
convolutional layers whose last feature map, flattened, is the output (no dense layer). "Same"
padding keeps both valid for any angle count and detector size (51 projections, odd widths).
"""

from __future__ import annotations

import torch
from torch import nn

from .cpu_conv import conv2d_bias, is_narrow, narrow_conv2d

__all__ = ["Generator", "Discriminator", "SeededDropout", "Linear", "BlockLinear", "linear", "Conv2d"]

#: Largest weight block of a fully connected layer, in elements (16 MB of float32: well inside the
#: 32 MB that glibc serves from its heap; a larger gradient is mapped fresh, and page-faulted in,
#: every iteration).
MAX_BLOCK = 4 * 1024**2


class _LinearFunction(torch.autograd.Function):
    """``x @ cat(weights).T + bias`` for row blocks ``weights`` (``transposed``: ``x @ cat(weights,
    dim=1) + bias`` for blocks of the transposed weight, ``(in, rows)``).

    The weight gradient of a single sample is an outer product, computed as one (broadcast) product
    instead of a rank-1 GEMM, which MKL runs several times slower (16384 x 256: 9.6 vs 1.2 ms on
    one core). A single sample's transposed product is ``torch.mv`` of the long rows, which MKL runs
    about twice as fast as the short rows of the plain layout (256 -> 65536 on one core: 2.4 vs 5.4
    ms forward, 2.1 vs 2.7 ms for the input's gradient).
    """

    generate_vmap_rule = True  # torch.func (the batched "independent" slabs) maps it over models

    @staticmethod
    def forward(x, bias, transposed, *weights):
        if transposed:
            if x.shape[0] == 1:
                return (torch.cat([torch.mv(w.t(), x[0]) for w in weights]) + bias).unsqueeze(0)
            return torch.cat([x @ w for w in weights], dim=-1) + bias
        out = torch.cat([x @ w.t() for w in weights], dim=-1) if len(weights) > 1 else x @ weights[0].t()
        return out + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, transposed, *weights = inputs
        ctx.transposed = transposed
        ctx.save_for_backward(x, *weights)

    @staticmethod
    def backward(ctx, grad):
        x, *weights = ctx.saved_tensors
        transposed = ctx.transposed
        sizes = [w.shape[1] if transposed else w.shape[0] for w in weights]
        parts = grad.split(sizes, dim=-1) if len(weights) > 1 else (grad,)
        single = x.shape[0] == 1
        grad_x = None
        if ctx.needs_input_grad[0]:
            for g, w in zip(parts, weights):
                if transposed:
                    term = torch.mv(w, g[0]).unsqueeze(0) if single else g @ w.t()
                else:
                    term = g @ w
                grad_x = term if grad_x is None else grad_x + term
        grad_b = grad.sum(0) if ctx.needs_input_grad[1] else None
        if transposed:
            grad_w = [x.t() * g if single else x.t() @ g for g in parts]
        else:
            grad_w = [g.t() * x if single else g.t() @ x for g in parts]
        return (grad_x, grad_b, None, *grad_w)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same initialisation, same result) on 2-D inputs, with the
    cheaper weight gradient of :class:`_LinearFunction`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2:
            return super().forward(x)
        return _LinearFunction.apply(x, self.bias, False, self.weight)


class BlockLinear(nn.Module):
    """``nn.Linear`` whose weight is held as blocks of at most ``max_block`` elements.

    Computes what ``nn.Linear`` computes (each output is the same dot product, up to rounding)
    from the same initialisation; only the gradients come in blocks, small enough to be reused from
    one iteration to the next instead of being mapped fresh (the 65536-wide output layer of a 256
    px generator has 16.8 M weights). A layer with more outputs than inputs holds its blocks
    transposed, ``(in_features, rows)`` (the faster products of :class:`_LinearFunction`);
    ``weight`` is always ``(out_features, in_features)``.
    """

    def __init__(self, in_features: int, out_features: int, max_block: int = MAX_BLOCK):
        super().__init__()
        full = nn.Linear(in_features, out_features)  # nn.Linear's initialisation, same random draws
        rows = max(1, int(max_block) // in_features)
        self.in_features, self.out_features = in_features, out_features
        self.transposed = out_features > in_features
        parts = full.weight.detach().split(rows)
        self.blocks = nn.ParameterList(
            nn.Parameter(w.t().contiguous() if self.transposed else w.clone()) for w in parts)
        self.bias = nn.Parameter(full.bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The whole weight ``(out_features, in_features)`` (a copy, for inspection)."""
        if self.transposed:
            return torch.cat(list(self.blocks), dim=1).t().contiguous()
        return torch.cat(list(self.blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LinearFunction.apply(x.reshape(-1, self.in_features), self.bias, self.transposed,
                                     *self.blocks).reshape(*x.shape[:-1], self.out_features)


def linear(in_features: int, out_features: int, max_block: int = MAX_BLOCK) -> nn.Module:
    """A :class:`Linear`, or a :class:`BlockLinear` when its weight has more than ``max_block``
    elements."""
    if in_features * out_features > max_block:
        return BlockLinear(in_features, out_features, max_block)
    return Linear(in_features, out_features)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same initialisation, same result up to rounding) whose bias
    gradient is one reduction of the output gradient instead of oneDNN's (which costs about 2 ms per
    32-channel layer at 256 px in channels-last on one AMD core).

    With ``cpu_kernels`` set (by :meth:`Generator.use_channels_last`), on the CPU: a stride-1
    "same" convolution with a narrow side (:func:`~.cpu_conv.is_narrow`: the generator's first and
    last layers) runs as one matrix product (:func:`~.cpu_conv.narrow_conv2d`), the others with
    the bias inside the convolution's output pass (:func:`~.cpu_conv.conv2d_bias`). Otherwise (a
    GPU, the stacked solver's vmap, bfloat16 autocast) the bias is added after the convolution.
    Measured in-process, interleaved, on an Intel Xeon (the generator's forward and backward pass,
    kernels on / off): 0.94 at 256 px and 0.97 at 128 px on one thread, 0.96 and 0.98 on two.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"Conv2d supports padding_mode='zeros' only, got {self.padding_mode!r}")
        self.cpu_kernels = False

    @property
    def fits_narrow_gemm(self) -> bool:
        """Whether :func:`~.cpu_conv.narrow_conv2d` computes this convolution."""
        k = self.kernel_size
        return (k[0] == k[1] and k[0] % 2 == 1 and self.stride == (1, 1) and self.dilation == (1, 1)
                and self.groups == 1 and self.padding == (k[0] // 2, k[0] // 2)
                and is_narrow(self.in_channels, self.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.cpu_kernels and x.device.type == "cpu" and x.ndim == 4 and self.bias is not None
                and not isinstance(self.padding, str) and x.dtype == self.weight.dtype
                and not torch.is_autocast_enabled("cpu")):  # bfloat16 autocast: PyTorch's own kernels
            if self.fits_narrow_gemm:
                return narrow_conv2d(x, self.weight, self.bias)
            return conv2d_bias(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        y = nn.functional.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        if self.bias is None:
            return y
        return y + self.bias.view(1, -1, 1, 1)


class SeededDropout(nn.Module):
    """Dropout drawing its masks from its own ``torch.Generator`` (reproducible per run)."""

    def __init__(self, p: float, generator: torch.Generator | None = None):
        super().__init__()
        self.p = float(p)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = 1.0 - self.p
        if self.generator is not None and self.generator.device == x.device:
            mask = torch.rand(x.shape, generator=self.generator, device=x.device) < keep
        else:
            mask = torch.rand_like(x) < keep
        return x * mask / keep


class Generator(nn.Module):
    """Sinogram ``(B, 1, A, D)`` -> image ``(B, 1, n, n)``.

    Parameters
    ----------
    n_angles, n_det : int
        Sinogram shape; the image is ``n_det x n_det``.
    units : int
        Width of the three hidden fully connected layers.
    dropout : float
        Dropout after the hidden fully connected layers.
    channels : int
        Feature maps of the convolutional layers.
    kernel : int
        Kernel size of the convolutional layers (odd).
    n_conv : int
        Number of convolutional layers (the last maps to one channel).
    output : {"linear", "relu", "softplus"}
        Output activation. ``"relu"`` starts its bias at ``output_bias`` so it cannot stick at 0.
    zero_last : bool
        Start the last layer at zero (the generator then outputs 0: a residual on an initial image).
    """

    def __init__(
        self,
        n_angles: int,
        n_det: int,
        units: int = 256,
        dropout: float = 0.25,
        channels: int = 32,
        kernel: int = 3,
        n_conv: int = 9,
        output: str = "linear",
        output_bias: float = 0.0,
        dropout_generator: torch.Generator | None = None,
        zero_last: bool = False,
    ):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        if n_conv < 1:
            raise ValueError(f"n_conv must be >= 1, got {n_conv}")
        if output not in ("linear", "relu", "softplus"):
            raise ValueError(f"output must be 'linear', 'relu' or 'softplus', got {output!r}")
        self.n = n_det
        n_in = n_angles * n_det
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(3):
            layers += [linear(width, units), nn.LayerNorm(units), nn.Softplus()]
            if dropout > 0:
                layers.append(SeededDropout(dropout, dropout_generator))
            width = units
        layers += [linear(width, n_det * n_det)]
        self.fc = nn.Sequential(*layers)
        self.fc_norm = nn.LayerNorm(n_det * n_det)
        convs: list[nn.Module] = []
        cin = 1
        for _ in range(n_conv - 1):
            convs += [
                Conv2d(cin, channels, kernel, padding=kernel // 2),
                nn.GroupNorm(1, channels),  # layer normalisation over (C, H, W)
                nn.ReLU(inplace=True),
            ]
            cin = channels
        self.conv = nn.Sequential(*convs)
        self.last = Conv2d(cin, 1, kernel, padding=kernel // 2)
        self.output = output
        if zero_last:  # residual use: the first output is exactly 0
            nn.init.zeros_(self.last.weight)
            nn.init.zeros_(self.last.bias)
        elif output == "relu":
            nn.init.constant_(self.last.bias, output_bias)
        self.memory_format = torch.contiguous_format

    def use_channels_last(self, on: bool = True) -> Generator:
        """Run the convolutions in channels-last (NHWC) memory format (oneDNN's NHWC kernels on the
        CPU, the first and last layers as one matrix product each there)."""
        self.memory_format = torch.channels_last if on else torch.contiguous_format
        for module in (self.conv, self.last):
            module.to(memory_format=self.memory_format)
        for module in self.modules():
            if isinstance(module, Conv2d):
                module.cpu_kernels = on
        return self

    def forward(self, sino: torch.Tensor) -> torch.Tensor:
        bsz = sino.shape[0]
        x = self.fc(sino.reshape(bsz, -1))
        x = torch.nn.functional.softplus(self.fc_norm(x)).view(bsz, 1, self.n, self.n)
        if self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.last(self.conv(x))
        if self.output == "relu":
            x = torch.relu(x)
        elif self.output == "softplus":
            x = torch.nn.functional.softplus(x)
        return x


class Discriminator(nn.Module):
    """Sinogram ``(B, 1, A, D)`` -> logits ``(B, k)``: four stride-2 convolutions, flattened.

    ``spectral_norm`` wraps each convolution in spectral normalisation (more stable adversarial
    training); otherwise layer normalisation follows each hidden convolution, as in the paper.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 1), kernel: int = 5,
                 spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(channels):
            conv = nn.Conv2d(cin, cout, kernel, stride=2, padding=kernel // 2)
            if spectral_norm:
                conv = nn.utils.parametrizations.spectral_norm(conv)
            layers.append(conv)
            if i < len(channels) - 1:
                if not spectral_norm:
                    layers.append(nn.GroupNorm(1, cout))
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.net = nn.Sequential(*layers)
        self.memory_format = torch.contiguous_format

    def use_channels_last(self, on: bool = True) -> Discriminator:
        """Run the convolutions in channels-last (NHWC) memory format (oneDNN's NHWC kernels on the
        CPU: the update of a 120 x 256 pair about 15 % faster on one core)."""
        self.memory_format = torch.channels_last if on else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        return self

    def forward(self, sino: torch.Tensor) -> torch.Tensor:
        if self.memory_format is torch.channels_last:
            sino = sino.contiguous(memory_format=torch.channels_last)
        return self.net(sino).flatten(1)
