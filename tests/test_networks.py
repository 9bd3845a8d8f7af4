"""The generator's fully connected layers compute what nn.Linear computes, with cheaper gradients."""

import pytest
import torch

from napari_ganrec.methods.networks import BlockLinear, Generator, Linear, linear


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["block", "plain"])
def test_linear_layers_match_nn_linear_values_and_gradients(kind, batch):
    n_in, n_out = (64, 1000) if kind == "block" else (50, 20)
    torch.manual_seed(0)
    ref = torch.nn.Linear(n_in, n_out)
    torch.manual_seed(0)
    layer = BlockLinear(n_in, n_out, max_block=64 * 300) if kind == "block" else Linear(n_in, n_out)
    weights = list(layer.blocks) if kind == "block" else [layer.weight]
    assert len(weights) == (4 if kind == "block" else 1)  # 300 + 300 + 300 + 100 rows
    assert torch.equal(torch.cat([w.detach() for w in weights]), ref.weight.detach())  # same initialisation
    x = torch.randn(batch, n_in, requires_grad=True)
    g = torch.randn(batch, n_out)
    expected = torch.autograd.grad(ref(x), [x, ref.weight, ref.bias], g)
    out = layer(x)
    got = torch.autograd.grad(out, [x, *weights, layer.bias], g)
    assert torch.allclose(out, ref(x), atol=1e-6)
    assert torch.allclose(got[0], expected[0], atol=1e-5)
    assert torch.allclose(torch.cat(got[1:-1]), expected[1], atol=1e-5)
    assert torch.allclose(got[-1], expected[2], atol=1e-5)


def test_linear_function_passes_gradcheck():
    from napari_ganrec.methods.networks import _LinearFunction

    def f(x, w, b):
        return _LinearFunction.apply(x, b, w[:2], w[2:])

    for batch in (1, 2):
        args = (torch.randn(batch, 3, dtype=torch.double, requires_grad=True),
                torch.randn(5, 3, dtype=torch.double, requires_grad=True),
                torch.randn(5, dtype=torch.double, requires_grad=True))
        assert torch.autograd.gradcheck(f, args)


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
