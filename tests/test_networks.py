"""The generator's fully connected layers compute what nn.Linear computes, with cheaper gradients."""

import pytest
import torch

from napari_ganrec.methods.networks import BlockLinear, Generator, Linear, linear


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["block", "block-transposed", "plain"])
def test_linear_layers_match_nn_linear_values_and_gradients(kind, batch):
    n_in, n_out = {"block": (1000, 64), "block-transposed": (64, 1000), "plain": (50, 20)}[kind]
    torch.manual_seed(0)
    ref = torch.nn.Linear(n_in, n_out)
    torch.manual_seed(0)
    if kind == "plain":
        layer = Linear(n_in, n_out)
        weights = [layer.weight]
    else:
        layer = BlockLinear(n_in, n_out, max_block=64 * 300)
        weights = list(layer.blocks)
        assert layer.transposed == (kind == "block-transposed")  # more outputs than inputs
        assert all(w.numel() <= 64 * 300 and w.is_contiguous() for w in weights)
        expected_shapes = ([(64, 300)] * 3 + [(64, 100)] if layer.transposed
                           else [(19, 1000)] * 3 + [(7, 1000)])
        assert [tuple(w.shape) for w in weights] == expected_shapes
    assert torch.equal(layer.weight.detach(), ref.weight.detach())  # same initialisation
    x = torch.randn(batch, n_in, requires_grad=True)
    g = torch.randn(batch, n_out)
    expected = torch.autograd.grad(ref(x), [x, ref.weight, ref.bias], g)
    out = layer(x)
    got = torch.autograd.grad(out, [x, *weights, layer.bias], g)
    grad_w = torch.cat(got[1:-1], dim=1).t() if kind == "block-transposed" else torch.cat(got[1:-1])
    assert torch.allclose(out, ref(x), atol=1e-5)
    assert torch.allclose(got[0], expected[0], atol=1e-5)
    assert torch.allclose(grad_w, expected[1], atol=1e-5)
    assert torch.allclose(got[-1], expected[2], atol=1e-5)


def test_linear_function_passes_gradcheck():
    from napari_ganrec.methods.networks import _LinearFunction

    def f(x, w, b):
        return _LinearFunction.apply(x, b, False, w[:2], w[2:])

    def f_transposed(x, w, b):  # w: the transposed weight (in, out) in two column blocks
        return _LinearFunction.apply(x, b, True, w[:, :2], w[:, 2:])

    for batch in (1, 2):
        args = (torch.randn(batch, 3, dtype=torch.double, requires_grad=True),
                torch.randn(5, 3, dtype=torch.double, requires_grad=True),
                torch.randn(5, dtype=torch.double, requires_grad=True))
        assert torch.autograd.gradcheck(f, args)
        args_t = (args[0], torch.randn(3, 5, dtype=torch.double, requires_grad=True), args[2])
        assert torch.autograd.gradcheck(f_transposed, args_t)


def test_only_large_weights_are_split_into_blocks():
    assert isinstance(linear(100, 100), Linear)
    big = linear(256, 65536)
    assert isinstance(big, BlockLinear) and all(w.numel() <= 4 * 1024**2 for w in big.blocks)
    assert big.weight.shape == (65536, 256)
    g = Generator(10, 16, units=8, n_conv=2, channels=4)
    assert isinstance(g.fc[0], Linear) and g(torch.randn(2, 1, 10, 16)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("cin, cout", [(1, 6), (6, 6), (6, 1)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_conv2d_with_bias_added_after_matches_nn_conv2d(cin, cout, layout):
    """The generator's Conv2d: nn.Conv2d's parameters, initialisation, values and gradients."""
    from napari_ganrec.methods.networks import Conv2d

    torch.manual_seed(0)
    ref = torch.nn.Conv2d(cin, cout, 3, padding=1).to(memory_format=layout)
    torch.manual_seed(0)
    conv = Conv2d(cin, cout, 3, padding=1).to(memory_format=layout)
    assert conv.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(conv.state_dict().values(), ref.state_dict().values()))
    x = torch.randn(2, cin, 9, 7).contiguous(memory_format=layout).requires_grad_()
    g = torch.randn(2, cout, 9, 7)
    out, expected = conv(x), ref(x)
    assert torch.allclose(out, expected, atol=1e-6)
    got = torch.autograd.grad(out, [x, conv.weight, conv.bias], g)
    want = torch.autograd.grad(expected, [x, ref.weight, ref.bias], g)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(1, 2, 3, padding=1, padding_mode="reflect")


def test_generator_convolutions_add_their_bias_after_the_convolution():
    from napari_ganrec.methods.networks import Conv2d

    g = Generator(10, 16, units=8, n_conv=3, channels=4)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(type(m) is Conv2d for m in convs)


def test_transposed_blocks_run_under_vmap_as_the_stacked_solver_runs_them():
    """batch_mode="independent" maps the generator over stacked weights with torch.vmap."""
    torch.manual_seed(0)
    layer = BlockLinear(8, 60, max_block=8 * 25)  # transposed blocks (8, 25), (8, 25), (8, 10)
    assert layer.transposed and len(layer.blocks) == 3
    params = {k: torch.stack([v.detach(), 2 * v.detach()]).requires_grad_() for k, v in layer.named_parameters()}
    x = torch.randn(2, 8)

    def one(p, xi):
        return torch.func.functional_call(layer, p, (xi.unsqueeze(0),)).squeeze(0)

    out = torch.vmap(one)(params, x)
    w0 = layer.weight.detach()
    assert torch.allclose(out[0], x[0] @ w0.t() + layer.bias, atol=1e-5)
    assert torch.allclose(out[1], x[1] @ (2 * w0).t() + 2 * layer.bias, atol=1e-5)
    grads = dict(zip(params, torch.autograd.grad(out.sum(), list(params.values()))))
    assert torch.allclose(grads["bias"], torch.ones(2, 60))
    for copy in (0, 1):  # d(sum)/d(W^T) = x 1^T for each copy's blocks
        assert torch.allclose(grads["blocks.0"][copy], x[copy].view(-1, 1).expand(8, 25), atol=1e-6)
        assert torch.allclose(grads["blocks.2"][copy], x[copy].view(-1, 1).expand(8, 10), atol=1e-6)
