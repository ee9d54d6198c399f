"""The V-cycle layer: shapes and the size rule, linearity, boundary conditions, and two settings in
which the learned V-cycle reduces to a linear map known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from surrogates.nn.multigrid import VCycle, coarse_sizes, min_grid_size


def _set_stencil(conv: torch.nn.Module, taps: list[float]) -> None:
    """Channel-diagonal weights with the 1D stencil ``taps`` (tensor product in 2D)."""
    weight = torch.zeros_like(conv.weight)  # (out, in, k...) for Conv, (in, out, k...) for ConvTranspose
    k = torch.tensor(taps, dtype=weight.dtype)
    kernel = k if weight.ndim == 3 else torch.outer(k, k)
    for c in range(min(weight.shape[0], weight.shape[1])):
        weight[c, c] = kernel
    with torch.no_grad():
        conv.weight.copy_(weight)


def _identity_taps(kernel_size: int) -> list[float]:
    taps = [0.0] * kernel_size
    taps[kernel_size // 2] = 1.0
    return taps


@pytest.mark.parametrize(
    "dim, sizes, levels",
    [(1, [64], 5), (1, [37], 4), (1, [9], 4), (2, [32, 32], 4), (2, [33, 20], 3), (2, [17, 45], 5)],
)
@pytest.mark.parametrize("boundary", ["dirichlet", "periodic", "neumann"])
def test_shapes_on_sizes_that_are_not_powers_of_two(dim, sizes, levels, boundary):
    layer = VCycle(2, 3, dim=dim, levels=levels, smoothing=[1] * (levels - 1) + [2], post_smoothing=1,
                   boundary=boundary)
    out = layer(torch.randn(2, 2, *sizes))
    assert out.shape == (2, 3, *sizes)


@pytest.mark.parametrize("boundary", ["dirichlet", "periodic"])
@pytest.mark.parametrize("sizes", [[1], [5], [3, 16]])
def test_zero_and_circular_padding_take_grids_coarser_than_the_levels(sizes, boundary):
    layer = VCycle(1, 2, dim=len(sizes), levels=5, boundary=boundary)
    assert layer(torch.randn(2, 1, *sizes)).shape == (2, 2, *sizes)


def test_coarse_sizes_and_minimum():
    assert coarse_sizes(64, 5) == [64, 32, 16, 8, 4]
    assert coarse_sizes(37, 4) == [37, 19, 10, 5]
    assert [min_grid_size(levels, "neumann") for levels in (1, 2, 5, 6)] == [2, 3, 17, 33]
    assert min_grid_size(6, "dirichlet") == min_grid_size(6, "periodic") == 1
    for levels in range(1, 8):
        n = min_grid_size(levels, "neumann")
        assert coarse_sizes(n, levels)[-1] == 2 and coarse_sizes(n - 1, levels)[-1] == 1


@pytest.mark.parametrize("sizes", [[16], [16, 40]])
def test_grid_too_small_for_reflect_padding_raises_naming_size_and_levels(sizes):
    layer = VCycle(1, 1, dim=len(sizes), levels=5, boundary="neumann")
    with pytest.raises(ValueError, match=r"5 levels and neumann \(reflect\) padding needs at least 17 points.*size \(16"):
        layer(torch.randn(1, 1, *sizes))
    assert layer(torch.randn(1, 1, *[17] * len(sizes))).shape[2:] == (17,) * len(sizes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=3), r"^VCycle supports dim 1 or 2, got 3$"),
        (dict(levels=0), r"^levels must be in \[1, 16\], got 0$"),
        (dict(boundary="robin"), r"^boundary must be one of .*, got 'robin'$"),
        (dict(kernel_size=4), r"^kernel_size must be a positive odd number, got 4$"),
        (dict(smoothing=[1, 1]), r"^smoothing has 2 entries, expected 3 \(one per level\)$"),
        (dict(smoothing=0), r"^smoothing entries must be >= 1, got \[0, 0, 0\]$"),
        (dict(post_smoothing=-1), r"^post_smoothing entries must be >= 0, got \[-1, -1\]$"),
    ],
)
def test_bad_arguments(kwargs, message):
    # each refusal names its argument (anchored: "smoothing" must not be matched inside "post_smoothing")
    # and the value it got; a ValueError from elsewhere, or naming another argument, does not pass
    with pytest.raises(ValueError, match=message):
        VCycle(1, 1, **{"levels": 3, **kwargs})


def test_wrong_input_raises():
    with pytest.raises(ValueError, match=r"\(batch, 2, 2 spatial dims\)"):
        VCycle(2, 2, dim=2, levels=2)(torch.randn(1, 3, 8, 8))


def test_linear():
    torch.manual_seed(0)
    layer = VCycle(2, 3, dim=2, levels=3, smoothing=2, post_smoothing=1).double()
    x, y = torch.randn(2, 2, 2, 20, 24, dtype=torch.float64)
    torch.testing.assert_close(layer(2.0 * x - 3.0 * y), 2.0 * layer(x) - 3.0 * layer(y))


@pytest.mark.parametrize("dim", [1, 2])
def test_periodic_commutes_with_shifts_by_the_coarsest_spacing(dim):
    """Circular padding everywhere: shifting the input by 2^(levels-1) points shifts the output."""
    torch.manual_seed(0)
    levels = 4
    layer = VCycle(2, 2, dim=dim, levels=levels, post_smoothing=1, boundary="periodic").double()
    x = torch.randn(1, 2, *[32] * dim, dtype=torch.float64)
    shift, dims = 2 ** (levels - 1), tuple(range(2, 2 + dim))
    shifted = layer(torch.roll(x, [shift] * dim, dims))
    torch.testing.assert_close(shifted, torch.roll(layer(x), [shift] * dim, dims))
    # Zero padding sees the boundary: no such symmetry.
    dirichlet = VCycle(2, 2, dim=dim, levels=levels, boundary="dirichlet").double()
    assert not torch.allclose(dirichlet(torch.roll(x, [shift] * dim, dims)), torch.roll(dirichlet(x), [shift] * dim, dims))


@pytest.mark.parametrize("dim, sizes", [(1, [40]), (2, [19, 24])])
@pytest.mark.parametrize("boundary", ["dirichlet", "periodic", "neumann"])
def test_exact_smoother_makes_the_v_cycle_the_identity(dim, sizes, boundary):
    """A = S = I: the first smoothing step solves ``A u = f`` exactly (u = f), the restricted
    residual is zero, so every coarse correction vanishes, whatever R, Pi and P are."""
    torch.manual_seed(0)
    layer = VCycle(3, 3, dim=dim, levels=3, smoothing=[2, 1, 2], post_smoothing=1, boundary=boundary).double()
    for module in layer.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)) and module.stride[0] == 1:
            _set_stencil(module, _identity_taps(module.kernel_size[0]))
    f = torch.randn(2, 3, *sizes, dtype=torch.float64)
    torch.testing.assert_close(layer(f), f)


# -- identity smoothers, no operator: a sum of interpolated injections ---------------------------


def _injection(n: int) -> np.ndarray:
    """Coarse point j = fine point 2 j: shape (ceil(n/2), n)."""
    m = math.ceil(n / 2)
    matrix = np.zeros((m, n))
    matrix[np.arange(m), 2 * np.arange(m)] = 1.0
    return matrix


def _interpolation(n: int, boundary: str) -> np.ndarray:
    """Linear interpolation from ceil(n/2) coarse points to n fine points, shape (n, ceil(n/2)).

    Even fine points copy their coarse point; odd fine points average their two coarse
    neighbours. The neighbour past the last coarse point is zero (Dirichlet), the first coarse
    point (periodic) or the last-but-one coarse point (Neumann: reflection).
    """
    m = math.ceil(n / 2)
    matrix = np.zeros((n, m))
    for i in range(n):
        if i % 2 == 0:
            matrix[i, i // 2] = 1.0
            continue
        left, right = (i - 1) // 2, (i + 1) // 2
        matrix[i, left] += 0.5
        if right < m:
            matrix[i, right] += 0.5
        elif boundary == "periodic":
            matrix[i, 0] += 0.5
        elif boundary == "neumann":
            matrix[i, m - 2] += 0.5
    return matrix


def _expected_map(n: int, smoothing: list[int], boundary: str) -> np.ndarray:
    """sum_l nu_l (P_0 ... P_{l-1}) (R_{l-1} ... R_0): each level adds nu_l copies of its restricted input."""
    total = np.zeros((n, n))
    restrict, prolong, size = np.eye(n), np.eye(n), n
    for level, nu in enumerate(smoothing):
        if level > 0:
            restrict = _injection(size) @ restrict
            prolong = prolong @ _interpolation(size, boundary)
            size = math.ceil(size / 2)
        total += nu * prolong @ restrict
    return total


@pytest.mark.parametrize("n", [16, 21, 30])
@pytest.mark.parametrize("boundary", ["dirichlet", "periodic", "neumann"])
@pytest.mark.parametrize("restrict_residual", [True, False])
def test_identity_smoothers_give_sum_of_interpolated_injections(n, boundary, restrict_residual):
    """S = I, A = 0, Pi = 0, R = injection, P = [1/2, 1, 1/2]: level l contributes nu_l times the
    input injected to its grid and linearly interpolated back, ``sum_l nu_l P^l R^l f``.
    Checked in 1D against matrices built here, and in 2D against their Kronecker products."""
    smoothing = [1, 2, 3]
    for dim in (1, 2):
        layer = VCycle(1, 1, dim=dim, levels=3, smoothing=smoothing, boundary=boundary,
                       restrict_residual=restrict_residual).double()
        for level in range(3):
            for smoother in layer.S[level]:
                _set_stencil(smoother, _identity_taps(3))
            if hasattr(layer.A[level], "weight"):  # an Identity placeholder where no residual is formed
                torch.nn.init.zeros_(layer.A[level].weight)
        for level in range(2):
            _set_stencil(layer.R[level], [0.0, 1.0, 0.0])
            torch.nn.init.zeros_(layer.Pi[level].weight)
            _set_stencil(layer.P[level], [0.5, 1.0, 0.5])
        if dim == 1:
            f = torch.randn(3, 1, n, dtype=torch.float64)
            expected = torch.einsum("ij,bcj->bci", torch.from_numpy(_expected_map(n, smoothing, boundary)), f)
        else:
            m = n + 3  # a different size on the second dimension
            f = torch.randn(3, 1, n, m, dtype=torch.float64)
            # Each level's term is the tensor product of the 1D injections and interpolations
            # (the sum over levels is not), so build the 2D map level by level.
            expected = torch.zeros_like(f)
            rx, px, ry, py, nx, ny = np.eye(n), np.eye(n), np.eye(m), np.eye(m), n, m
            for level, nu in enumerate(smoothing):
                if level > 0:
                    rx, px = _injection(nx) @ rx, px @ _interpolation(nx, boundary)
                    ry, py = _injection(ny) @ ry, py @ _interpolation(ny, boundary)
                    nx, ny = math.ceil(nx / 2), math.ceil(ny / 2)
                mx, my = torch.from_numpy(px @ rx), torch.from_numpy(py @ ry)
                expected += nu * torch.einsum("ij,kl,bcjl->bcik", mx, my, f)
        torch.testing.assert_close(layer(f), expected)
