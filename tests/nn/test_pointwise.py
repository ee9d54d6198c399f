"""PointwiseLinear: the channel map at every grid point, against its definition."""

from __future__ import annotations

import pytest
import torch

from surrogates.nn.pointwise import PointwiseLinear


@pytest.mark.parametrize("shape", [(3, 5), (3, 5, 7), (2, 5, 6, 4), (2, 5, 3, 4, 2), (0, 5, 4, 4)])
def test_matches_definition(shape):
    torch.manual_seed(0)
    layer = PointwiseLinear(5, 3).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    bias = layer.bias.view(-1, *([1] * (x.ndim - 2)))
    expected = torch.einsum("oi,bi...->bo...", layer.weight, x) + bias
    assert out.shape == (shape[0], 3, *shape[2:])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if shape[0]:
        grads = torch.autograd.grad(out.square().sum(), [x, layer.weight, layer.bias])
        expected_grads = torch.autograd.grad(expected.square().sum(), [x, layer.weight, layer.bias])
        for g, e in zip(grads, expected_grads):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_non_contiguous_input():
    layer = PointwiseLinear(4, 2)
    x = torch.randn(2, 4, 8, 6)[..., :5]  # a cropped view, as after FNO padding
    torch.testing.assert_close(layer(x), layer(x.contiguous()), rtol=0, atol=0)
