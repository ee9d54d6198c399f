"""SpectralConv: shapes, agreement with a slow numpy reference, discretization invariance, linearity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from surrogates.nn.spectral_conv import SpectralConv, kept_bins


def _reference(conv: SpectralConv, x: np.ndarray) -> np.ndarray:
    """Mode-by-mode spectral convolution with numpy FFTs (float64/complex128 throughout).

    For every kept frequency ``k`` (non-last dims in [-m, m-1], last in [0, m-1], clipped to the
    grid) and every output channel, ``out_hat[b, o, k] = sum_i x_hat[b, i, k] W[k, i, o]``.
    """
    sizes = x.shape[2:]
    x_hat = np.fft.rfftn(x, axes=tuple(range(2, x.ndim)), norm="forward")
    w = conv.weight.detach().double().numpy()
    w = (w[..., 0] + 1j * w[..., 1]).reshape(*conv.weight_shape, conv.in_channels, conv.out_channels)
    out_hat = np.zeros((x.shape[0], conv.out_channels, *x_hat.shape[2:]), dtype=np.complex128)
    per_dim = []
    for axis, (n, m) in enumerate(zip(sizes, conv.modes)):
        last = axis == conv.dim - 1
        n_pos, n_neg = kept_bins(n, m, last)
        freqs = list(range(n_pos)) + list(range(-n_neg, 0))
        # (FFT bin, weight index) of each kept frequency
        per_dim.append([(k % n if not last else k, k % (2 * m) if not last else k) for k in freqs])
    for combo in itertools.product(*per_dim):
        fft_index = tuple(c[0] for c in combo)
        w_index = tuple(c[1] for c in combo)
        for b in range(x.shape[0]):
            for o in range(conv.out_channels):
                total = 0j
                for i in range(conv.in_channels):
                    total += x_hat[(b, i) + fft_index] * w[w_index + (i, o)]
                out_hat[(b, o) + fft_index] = total
    return np.fft.irfftn(out_hat, s=sizes, axes=tuple(range(2, x.ndim)), norm="forward")


@pytest.mark.parametrize(
    "modes, sizes",
    [([5], [16]), ([5], [17]), ([4, 3], [12, 10]), ([3, 4], [9, 11]), ([2, 2, 3], [6, 5, 8])],
)
def test_output_shape(modes, sizes):
    conv = SpectralConv(3, 5, modes)
    x = torch.randn(2, 3, *sizes)
    assert conv(x).shape == (2, 5, *sizes)


@pytest.mark.parametrize(
    "modes, sizes",
    [
        ([5], [16]),
        ([5], [7]),  # clipped: fewer points than kept modes
        ([4, 3], [12, 10]),
        ([4, 3], [9, 11]),  # odd sizes
        ([4, 3], [6, 4]),  # clipped on both dims, even sizes (Nyquist bins)
        ([2, 2, 3], [6, 5, 8]),
        ([3, 2, 2], [4, 7, 3]),  # clipped, 3D
    ],
)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_mode_by_mode_reference(modes, sizes, dtype, tol):
    torch.manual_seed(0)
    conv = SpectralConv(3, 2, modes).to(dtype)
    x = torch.randn(2, 3, *sizes, dtype=dtype)
    out = conv(x)
    assert out.dtype == dtype
    expected = _reference(conv, x.double().numpy())
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=0, atol=tol * scale)


def test_float64_input_with_float32_weights():
    conv = SpectralConv(2, 2, [3, 3])
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    assert conv(x).dtype == torch.float64


def _band_limited(n: int, coeffs: list[tuple[int, int, float, float]], channels: int = 2) -> torch.Tensor:
    """Periodic field on the grid ``j / n`` from a fixed list of (kx, ky, amplitude, phase)."""
    grid = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    fields = []
    for c in range(channels):
        f = torch.zeros(n, n, dtype=torch.float64)
        for kx, ky, amp, phase in coeffs:
            f += amp * torch.cos(2 * np.pi * (kx * xx + ky * yy) + phase + c)
        fields.append(f)
    return torch.stack(fields)[None]


def test_discretization_invariance_band_limited():
    """A field with frequencies |k| < 16 sampled on 32 and 64 points: same output at shared points."""
    rng = np.random.default_rng(0)
    coeffs = [
        (int(rng.integers(-15, 16)), int(rng.integers(-15, 16)), rng.normal(), rng.uniform(0, 6)) for _ in range(30)
    ]
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, [12, 12]).double()
    coarse = conv(_band_limited(32, coeffs))
    fine = conv(_band_limited(64, coeffs))
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=0, atol=1e-12 * coarse.abs().max().item())


def test_linearity():
    torch.manual_seed(0)
    conv = SpectralConv(3, 4, [4, 5]).double()
    x, y = torch.randn(2, 2, 3, 16, 12, dtype=torch.float64)
    a, b = 1.7, -0.3
    torch.testing.assert_close(conv(a * x + b * y), a * conv(x) + b * conv(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("modes, sizes", [([3], [16]), ([5], [7]), ([3, 2], [8, 6])])
def test_gradients_in_input_and_weights_match_finite_differences(modes, sizes):
    """The layer is linear in x and in W: float64 central differences are exact up to round-off
    (~eps |out| / step = 1e-16 / 1e-6), far below gradcheck's atol 1e-5, rtol 1e-3."""
    torch.manual_seed(0)
    conv = SpectralConv(2, 2, modes).double()
    x = torch.randn(2, 2, *sizes, dtype=torch.float64, requires_grad=True)

    def layer(x, weight):
        return torch.func.functional_call(conv, {"weight": weight}, (x,))

    weight = conv.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(layer, (x, weight))
    conv(x).square().sum().backward()
    assert conv.weight.grad.abs().max() > 0 and x.grad.shape == x.shape


@pytest.mark.parametrize("bad", [torch.randn(2, 3, 8), torch.randn(2, 4, 8, 8)])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError, match=r"\(batch, 3, n0, n1\)"):
        SpectralConv(3, 2, [3, 3])(bad)


def test_inference_cache_follows_weight_updates():
    """Without autograd the weight block is cached; any change of the weight must invalidate it."""
    torch.manual_seed(0)
    layer = SpectralConv(3, 4, (5, 4))
    x = torch.randn(2, 3, 16, 12)
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(layer(x), first)  # served from the cache
    assert torch.equal(layer(x), first)  # with autograd: rebuilt, same numbers
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().sum().backward()
    optimizer.step()  # in-place update
    with torch.no_grad():
        after_step = layer(x)
        assert not torch.allclose(after_step, first)
        layer.load_state_dict({"weight": torch.zeros_like(layer.weight)})
        assert torch.count_nonzero(layer(x)) == 0
        assert layer(x[:, :, :8, :6]).shape == (2, 4, 8, 6)  # a coarser grid keeps its own block
        assert torch.equal(layer(x), torch.zeros(2, 4, 16, 12))


def test_inference_cache_is_not_fooled_by_a_new_weight_at_a_freed_address():
    """Weights swapped in by ``functional_call`` (fresh tensors, freed after each call) must each be used.

    A fresh tensor often lands at the address of the one freed before it, with the same version counter
    (0): a cache keyed by address and version alone served an earlier weight's block for a later weight.
    The layer is linear in its weight, so with weight ``s * w`` the output is ``s`` times that with ``w``
    (up to the round-off of one multiplication, a few float32 eps of the output).
    """
    torch.manual_seed(0)
    layer = SpectralConv(4, 4, (6, 6)).eval()
    x = torch.randn(1, 4, 16, 16)
    base = layer.weight.detach().clone()
    with torch.no_grad():
        reference = torch.func.functional_call(layer, {"weight": base}, (x,))
        tol = 8 * torch.finfo(torch.float32).eps * reference.abs().max().item()
        for scale in range(2, 12):
            weight = base * scale
            out = torch.func.functional_call(layer, {"weight": weight}, (x,))
            del weight  # its memory is free for the next one
            torch.testing.assert_close(out, scale * reference, rtol=0, atol=scale * tol)


def test_inference_cache_is_dropped_on_request_after_a_write_through_data():
    """Writes through ``.data`` bump no version counter: ``clear_cache`` makes the layer see them."""
    torch.manual_seed(0)
    layer = SpectralConv(2, 2, (3, 3)).eval()
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        first = layer(x)
        layer.weight.data.mul_(-1.0)
        layer.clear_cache()
        torch.testing.assert_close(layer(x), -first, rtol=0, atol=0)


@pytest.mark.parametrize("sizes", [(32, 32), (12, 12), (10, 16), (16, 8), (8, 6)])
def test_agrees_with_neuraloperator_on_its_equivalent_mode_set(sizes):
    """``modes=(m, m)`` is neuraloperator's ``n_modes=(2m, 2m - 2)`` (module docstring): with the same
    complex weights both layers give the same output, also on grids too coarse for all modes (both clip
    to the frequencies of the grid). Even sizes only: neuraloperator undoes its ``fftshift`` with another
    ``fftshift``, which is its inverse only for even sizes.

    Both run in float32 (neuraloperator's spectrum is complex64): the difference is FFT round-off, a few
    ``eps log2(n)`` of the output's scale.
    """
    spectral_convolution = pytest.importorskip("neuralop.layers.spectral_convolution")
    torch.manual_seed(0)
    m, c_in, c_out = 6, 3, 2
    ours = SpectralConv(c_in, c_out, [m, m])
    theirs = spectral_convolution.SpectralConv(c_in, c_out, n_modes=(2 * m, 2 * m - 2), bias=False)
    w = ours.weight.detach()
    w = torch.complex(w[..., 0], w[..., 1]).reshape(2 * m, m, c_in, c_out).permute(2, 3, 0, 1)
    # ours stores the first dimension's frequencies 0..m-1, -m..-1; neuraloperator -m..m-1 (fftshifted)
    w = torch.roll(w, shifts=m, dims=2)
    with torch.no_grad():
        getattr(theirs.weight, "tensor", theirs.weight).copy_(w)
        x = torch.randn(2, c_in, *sizes)
        expected, out = theirs(x), ours(x)
    eps = torch.finfo(torch.float32).eps
    scale = expected.abs().max().item()
    torch.testing.assert_close(out, expected, rtol=0, atol=16 * eps * math.log2(max(sizes)) * scale)
