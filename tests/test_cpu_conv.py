"""The generator's CPU convolution kernels compute what F.conv2d computes, and run where they should."""

import pytest
import torch
import torch.nn.functional as F

from napari_ganrec.methods import cpu_conv
from napari_ganrec.methods.cpu_conv import conv2d_bias, is_narrow, narrow_conv2d
from napari_ganrec.methods.networks import Conv2d, Discriminator, Generator

CL = torch.channels_last


def _conv_case(batch, cin, cout, k, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, h, w, dtype=torch.float64, generator=gen)
    weight = torch.randn(cout, cin, k, k, dtype=torch.float64, generator=gen)
    bias = torch.randn(cout, dtype=torch.float64, generator=gen)
    grad = torch.randn(batch, cout, h, w, dtype=torch.float64, generator=gen)
    return (x.contiguous(memory_format=CL).requires_grad_(), weight.contiguous(memory_format=CL).requires_grad_(),
            bias.requires_grad_(), grad)


@pytest.mark.parametrize("batch, cin, cout, k, h, w", [
    (1, 1, 32, 3, 20, 24),   # the generator's first layer (gather: few inputs)
    (2, 32, 1, 3, 17, 15),   # its last layer (scatter: few outputs), odd sizes, two samples
    (1, 3, 8, 5, 12, 12),    # a 5x5 kernel
    (2, 8, 2, 5, 9, 11),
    (1, 1, 1, 3, 8, 8),
])
def test_narrow_conv_matches_conv2d_values_and_gradients(batch, cin, cout, k, h, w):
    x, weight, bias, grad = _conv_case(batch, cin, cout, k, h, w)
    want = F.conv2d(x, weight, bias, padding=k // 2)
    got = narrow_conv2d(x, weight, bias)
    assert got.shape == want.shape and got.is_contiguous(memory_format=CL)
    assert torch.allclose(got, want, atol=1e-12)
    g_want = torch.autograd.grad(want, (x, weight, bias), grad)
    g_got = torch.autograd.grad(got, (x, weight, bias), grad)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-11)
    assert g_got[1].stride() == weight.stride()  # the weight's own layout, for the fused optimiser


def test_narrow_conv_passes_gradcheck_without_bias_and_with_a_plain_layout_input():
    x, weight, _, _ = _conv_case(1, 2, 5, 3, 5, 6)
    assert torch.autograd.gradcheck(narrow_conv2d, (x, weight, None))
    plain = x.detach().contiguous().requires_grad_()  # NCHW input: copied into NHWC
    assert torch.allclose(narrow_conv2d(plain, weight), F.conv2d(plain, weight, padding=1), atol=1e-12)
    out = narrow_conv2d(plain, weight)
    assert torch.allclose(torch.autograd.grad(out.sum(), plain)[0],
                          torch.autograd.grad(F.conv2d(plain, weight, padding=1).sum(), plain)[0], atol=1e-12)


def test_narrow_conv_refuses_what_it_does_not_compute():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match="odd kernel"):
        narrow_conv2d(x, torch.randn(1, 2, 2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        narrow_conv2d(x, torch.randn(1, 3, 3, 3))
    assert is_narrow(1, 32) and is_narrow(32, 1) and not is_narrow(32, 32)


@pytest.mark.parametrize("need_x", [True, False])
def test_conv_bias_matches_conv2d_values_and_gradients(need_x):
    x, weight, bias, grad = _conv_case(2, 6, 6, 3, 9, 7)
    x = x.detach().requires_grad_(need_x)
    want = F.conv2d(x, weight, bias, padding=1)
    got = conv2d_bias(x, weight, bias, (1, 1), (1, 1))
    assert torch.allclose(got, want, atol=1e-12)
    inputs = (x, weight, bias) if need_x else (weight, bias)
    for a, b in zip(torch.autograd.grad(got, inputs, grad), torch.autograd.grad(want, inputs, grad)):
        assert torch.allclose(a, b, atol=1e-11)
    strided = conv2d_bias(x, weight, bias, (2, 2), (1, 1))  # stride and padding are passed on
    assert torch.allclose(strided, F.conv2d(x, weight, bias, stride=2, padding=1), atol=1e-12)
    assert torch.autograd.gradcheck(lambda w, b: conv2d_bias(x.detach()[:1, :, :4, :4], w, b, (1, 1), (1, 1)),
                                    (weight, bias))


def _generator(seed=0):
    torch.manual_seed(seed)
    return Generator(6, 12, units=8, dropout=0.0, channels=5, n_conv=3).double()


def test_generator_runs_its_cpu_kernels_in_channels_last_with_the_same_result(monkeypatch):
    ref, fast = _generator(), _generator()
    fast.use_channels_last()
    convs = [m for m in fast.modules() if isinstance(m, Conv2d)]
    assert [m.cpu_kernels for m in convs] == [True] * 3
    assert [m.fits_narrow_gemm for m in convs] == [True, False, True]  # 1 -> 5, 5 -> 5, 5 -> 1
    calls = []
    for name in ("narrow_conv2d", "conv2d_bias"):
        original = getattr(cpu_conv, name)
        monkeypatch.setattr("napari_ganrec.methods.networks." + name,
                            lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    sino = torch.randn(2, 1, 6, 12, dtype=torch.float64)
    out, want = fast(sino), ref(sino)
    assert calls == ["narrow_conv2d", "conv2d_bias", "narrow_conv2d"]
    assert torch.allclose(out, want, atol=1e-10)
    got = torch.autograd.grad(out.square().sum(), list(fast.parameters()))
    expected = torch.autograd.grad(want.square().sum(), list(ref.parameters()))
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-9)
    assert fast.state_dict().keys() == ref.state_dict().keys()  # warm starts are unaffected
    calls.clear()
    fast.use_channels_last(False)  # the stacked (vmap) solver's plain layout: F.conv2d again
    fast(sino)
    assert calls == [] and not any(m.cpu_kernels for m in convs)


def test_generator_under_bfloat16_autocast_leaves_its_cpu_kernels_to_pytorch(monkeypatch):
    """amp="bf16" on the CPU: the custom kernels would meet bfloat16 activations and float32
    weights (an error in their backward pass), so PyTorch's autocast convolutions run instead."""
    torch.manual_seed(0)
    g = Generator(6, 12, units=8, dropout=0.0, channels=5, n_conv=3).use_channels_last()
    sino = torch.randn(1, 1, 6, 12)
    want = g(sino).detach()  # float32, with the kernels
    calls = []
    monkeypatch.setattr("napari_ganrec.methods.networks.narrow_conv2d", lambda *a: calls.append(a))
    monkeypatch.setattr("napari_ganrec.methods.networks.conv2d_bias", lambda *a: calls.append(a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = g(sino)
    assert calls == [] and torch.allclose(out.float(), want, atol=0.05)  # bfloat16 ran, close to float32
    grads = torch.autograd.grad(out.float().sum(), list(g.parameters()))
    assert all(torch.isfinite(t).all() for t in grads)


def test_discriminator_in_channels_last_gives_the_same_logits_and_gradients():
    torch.manual_seed(0)
    ref = Discriminator().double()
    torch.manual_seed(0)
    fast = Discriminator().double().use_channels_last()
    assert fast.net[0].weight.is_contiguous(memory_format=CL)
    sino = torch.randn(2, 1, 30, 40, dtype=torch.float64, requires_grad=True)
    out, want = fast(sino), ref(sino)
    assert torch.allclose(out, want, atol=1e-10)
    g_fast = torch.autograd.grad(out.sum(), [sino, *fast.parameters()])
    g_ref = torch.autograd.grad(want.sum(), [sino, *ref.parameters()])
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, atol=1e-9)
    assert fast.use_channels_last(False).memory_format is torch.contiguous_format


def test_ganrec_on_the_cpu_uses_the_kernels_and_the_stacked_solver_does_not():
    import numpy as np

    from napari_ganrec.geometry import Geometry
    from napari_ganrec.methods.ganrec import GANrec, GANrecConfig
    from napari_ganrec.projector import Projector
    from napari_ganrec.volume.stacked import StackedGANrec

    proj = Projector(Geometry.create(np.linspace(0, 180, 8, endpoint=False), 16), device="cpu")
    sinos = torch.rand(2, 8, 16)
    cfg = GANrecConfig(units=8, channels=4, n_conv=3)
    single = GANrec(proj, sinos, cfg, seed=0)
    assert all(m.cpu_kernels for m in single.G.modules() if isinstance(m, Conv2d))
    assert single.D.memory_format is torch.channels_last
    assert np.isfinite(float(single.step()["g_loss"]))
    stacked = StackedGANrec(proj, sinos, cfg, seed=0)
    assert not any(getattr(m, "cpu_kernels", False) for m in stacked.G.modules())
    assert np.isfinite(float(stacked.step()["g_loss"]))
