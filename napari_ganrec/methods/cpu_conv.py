"""The generator's convolutions on the CPU, in channels-last: the bias gradient as one reduction,
and the layers with a narrow side (few input or few output channels) as one matrix product.

:func:`conv2d_bias` is ``F.conv2d`` with its bias, whose backward pass takes the bias gradient as
one sum of the output gradient instead of from oneDNN's backward kernel (which costs about 2 ms
per 32-channel layer at 256 px on one AMD core) and without a separate pass that adds the bias.

:func:`narrow_conv2d` computes a stride-1 "same" convolution with a narrow side as one GEMM.

The generator's first convolution (1 -> 32 channels) and its last (32 -> 1) do little arithmetic
(a 3x3 kernel: 9 multiply-adds per pixel and wide channel), which oneDNN runs far below its speed on
the 32 -> 32 layers: at 256 px on one Intel Xeon core the last layer's forward and backward pass
took 10.1 ms in isolation (5.1 ms here) and 10.4 ms inside the generator (6.5 ms here), 0.4
times as long as a 32 -> 32 layer with 32 times the arithmetic (24 ms). On channels-last (NHWC)
feature maps both reduce to one matrix product with the narrow side's ``k x k`` shifted copies:

- few inputs (*gather*): ``y = im2col(x) @ W``, the shifted copies of the narrow input as columns;
- few outputs (*scatter*): ``z = x @ W`` gives every pixel's ``k x k`` contributions, which a sum
  of ``k * k`` shifted planes of the narrow output places.

The backward pass is the same pair transposed. Values and gradients equal ``F.conv2d``'s up to
float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["conv2d_bias", "narrow_conv2d", "is_narrow", "MAX_NARROW"]

#: A side of at most this many channels counts as narrow.
MAX_NARROW = 4


def is_narrow(in_channels: int, out_channels: int) -> bool:
    """Whether a convolution has a narrow side (and a wider other side) for :func:`narrow_conv2d`."""
    return min(in_channels, out_channels) <= MAX_NARROW


def _offsets(k: int, sign: int) -> list[tuple[int, int, int]]:
    """``(tap, row start, column start)`` in a ``k // 2``-padded map for each tap ``(i, j)``: the
    window at offset ``sign * (i - p, j - p)``."""
    p = k // 2
    return [(i * k + j, p + sign * (i - p), p + sign * (j - p)) for i in range(k) for j in range(k)]


def _gather(t: torch.Tensor, k: int, sign: int) -> torch.Tensor:
    """``out[b, h, w, tap, c] = t[b, h + sign * di, w + sign * dj, c]`` (zero outside), for an
    NHWC ``t``: ``(B, H, W, k * k, C)``."""
    _, h, w, _ = t.shape
    p = k // 2
    tp = F.pad(t, (0, 0, p, p, p, p))
    return torch.stack([tp[:, r:r + h, c:c + w] for _, r, c in _offsets(k, sign)], dim=3)


def _gather_sum(z: torch.Tensor, k: int, sign: int) -> torch.Tensor:
    """``out[b, h, w, c] = sum over taps of z[b, h + sign * di, w + sign * dj, tap, c]`` (zero
    outside), for ``z`` of shape ``(B, H, W, k * k, C)``: ``(B, H, W, C)``."""
    _, h, w, _, _ = z.shape
    p = k // 2
    zp = F.pad(z, (0, 0, 0, 0, p, p, p, p))
    out = None
    for tap, r, c in _offsets(k, sign):
        plane = zp[:, r:r + h, c:c + w, tap]
        out = plane.clone() if out is None else out.add_(plane)
    return out


class _NarrowConv(torch.autograd.Function):
    """NHWC ``x (B, H, W, Cin)`` -> NHWC ``y (B, H, W, Cout)``: a stride-1, zero-padded "same"
    convolution with the ``(Cout, Cin, k, k)`` ``weight``."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        cout, cin, k, _ = weight.shape
        b, h, w, _ = x.shape
        gather = cin <= cout
        if gather:  # few inputs: the shifted copies of x times the weight
            w_mat = weight.permute(2, 3, 1, 0).reshape(k * k * cin, cout)
            cols = _gather(x, k, +1).reshape(-1, k * k * cin)
            y = cols @ w_mat
        else:  # few outputs: every pixel's contributions, then the shifted planes summed
            w_mat = weight.permute(1, 2, 3, 0).reshape(cin, k * k * cout)
            z = (x.reshape(-1, cin) @ w_mat).view(b, h, w, k * k, cout)
            y = _gather_sum(z, k, +1).reshape(-1, cout)
        if bias is not None:
            y += bias
        ctx.gather = gather
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return y.view(b, h, w, cout)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        cout, cin, k, _ = weight.shape
        b, h, w, _ = x.shape
        gy = gy.contiguous()
        gy_mat = gy.reshape(-1, cout)
        grad_x = grad_w = grad_b = None
        if ctx.gather:
            w_mat = weight.permute(2, 3, 1, 0).reshape(k * k * cin, cout)
            if ctx.needs_input_grad[0]:
                g_cols = (gy_mat @ w_mat.t()).view(b, h, w, k * k, cin)
                grad_x = _gather_sum(g_cols, k, -1)
            if ctx.needs_input_grad[1]:
                cols = _gather(x, k, +1).reshape(-1, k * k * cin)
                grad_w = (cols.t() @ gy_mat).view(k, k, cin, cout).permute(3, 2, 0, 1)
        else:
            w_mat = weight.permute(1, 2, 3, 0).reshape(cin, k * k * cout)
            g_z = _gather(gy, k, -1).reshape(-1, k * k * cout)
            if ctx.needs_input_grad[0]:
                grad_x = (g_z @ w_mat.t()).view(b, h, w, cin)
            if ctx.needs_input_grad[1]:
                grad_w = (x.reshape(-1, cin).t() @ g_z).view(cin, k, k, cout).permute(3, 0, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = gy_mat.sum(0)
        if grad_w is not None:  # in the weight's own layout (the optimiser's fused kernel)
            grad_w = torch.empty_like(weight).copy_(grad_w)
        return grad_x, grad_w, grad_b


def narrow_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=k // 2)`` (stride 1, zero padding, odd ``k``) as one GEMM.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, Cin, H, W)`` in channels-last memory format (copied into it otherwise).
    weight : torch.Tensor
        ``(Cout, Cin, k, k)`` with odd ``k``; ``Cin`` or ``Cout`` narrow (:func:`is_narrow`).
    bias : torch.Tensor or None
        ``(Cout,)``.

    Returns
    -------
    torch.Tensor
        ``(B, Cout, H, W)`` in channels-last memory format.
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"narrow_conv2d: input {tuple(x.shape)} does not fit weight {tuple(weight.shape)}")
    k = weight.shape[-1]
    if weight.shape[-2] != k or k % 2 != 1:
        raise ValueError(f"narrow_conv2d needs a square, odd kernel, got {tuple(weight.shape[-2:])}")
    nhwc = x.permute(0, 2, 3, 1)
    if not nhwc.is_contiguous():
        nhwc = nhwc.contiguous()
    return _NarrowConv.apply(nhwc, weight, bias).permute(0, 3, 1, 2)


class _ConvBias(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, ...)``; the bias gradient is the output gradient's sum."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.conv = (stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = None
        if need_x or need_w:
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                gy, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
                [need_x, need_w, False])
        grad_b = gy.sum(dim=(0, 2, 3)) if need_b else None
        return grad_x, grad_w, grad_b, None, None, None, None


def conv2d_bias(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride=(1, 1), padding=(0, 0),
                dilation=(1, 1), groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` with the bias gradient taken
    as one reduction of the output gradient (same values up to float32 rounding).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, Cin, H, W)``.
    weight : torch.Tensor
        ``(Cout, Cin / groups, kh, kw)``.
    bias : torch.Tensor
        ``(Cout,)``.
    stride, padding, dilation : tuple of int
        As for ``F.conv2d`` (numeric padding only).
    groups : int
        As for ``F.conv2d``.

    Returns
    -------
    torch.Tensor
        ``(B, Cout, H', W')``.
    """
    return _ConvBias.apply(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), int(groups))
