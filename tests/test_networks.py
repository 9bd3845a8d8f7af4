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
