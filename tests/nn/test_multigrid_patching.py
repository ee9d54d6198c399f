"""Multi-grid patches: stitching round trip, windows and context against closed forms, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates.nn.multigrid_patching import PatchGrid, multigrid_patches, stitch_patches


@pytest.mark.parametrize("sizes, levels, fraction", [((16, 16), 1, 0.25), ((32, 16), 2, 0.5), ((12, 20), 2, 0.0)])
@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_stitching_the_fine_channels_gives_the_field_back(sizes, levels, fraction, boundary):
    grid = PatchGrid(sizes, levels, fraction, boundary)
    x = torch.randn(3, 2, *sizes)
    patches = multigrid_patches(x, grid)
    assert patches.shape == (3 * 4**levels, 2 * (levels + 1), *grid.window)
    assert torch.equal(stitch_patches(patches[:, :2], grid), x)


@pytest.mark.parametrize("boundary, mode", [("periodic", "wrap"), ("reflect", "reflect")])
def test_fine_window_is_the_padded_field_around_the_patch(boundary, mode):
    grid = PatchGrid((16, 24), levels=1, padding_fraction=0.25, boundary=boundary)  # patches 8x12, pad 2x3
    x = torch.randn(1, 1, 16, 24)
    patches = multigrid_patches(x, grid)
    (s1, s2), (p1, p2) = grid.patch, grid.pad
    padded = np.pad(x[0, 0].numpy(), ((p1, p1), (p2, p2)), mode=mode)
    for i in range(2):
        for j in range(2):
            window = padded[i * s1 : i * s1 + grid.window[0], j * s2 : j * s2 + grid.window[1]]
            np.testing.assert_array_equal(patches[2 * i + j, 0].numpy(), window)


@pytest.mark.parametrize("level", [1, 2])
def test_context_is_centred_on_its_patch_and_block_averaged(level):
    """An indicator of patch (i, j) shows up, in that patch's level-l context, as the centred
    ``s / 2**l`` block of ones (block averages of an indicator aligned with the blocks)."""
    grid = PatchGrid((32, 32), levels=2, padding_fraction=0.0)  # patches of 8; level-2 windows cover the domain
    s, w = grid.patch[0], grid.window[0]
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        x = torch.zeros(1, 1, 32, 32)
        x[0, 0, i * s : (i + 1) * s, j * s : (j + 1) * s] = 1
        context = multigrid_patches(x, grid)[4 * i + j, level]
        half, size = w // 2, s // 2**level
        expected = torch.zeros(w, w)
        expected[half - size // 2 : half + size // 2, half - size // 2 : half + size // 2] = 1
        assert torch.equal(context, expected)


def test_top_level_context_covers_the_domain():
    """Every patch's top-level window holds every coarse point (periodic, no padding)."""
    grid = PatchGrid((16, 16), levels=2, padding_fraction=0.0)
    x = torch.arange(256.0).reshape(1, 1, 16, 16)
    coarse = torch.nn.functional.avg_pool2d(x, 4).flatten().sort().values
    for context in multigrid_patches(x, grid)[:, 2]:
        assert torch.equal(context.flatten().sort().values, coarse)


def test_errors():
    with pytest.raises(ValueError, match="multiple of 4"):
        PatchGrid((18, 16), levels=2, padding_fraction=0.1)
    with pytest.raises(ValueError, match="boundary"):
        PatchGrid((16, 16), 1, 0.1, boundary="zero")
    grid = PatchGrid((16, 16), 1, 0.25)
    with pytest.raises(ValueError, match=r"\(batch, channels, 16, 16\)"):
        multigrid_patches(torch.zeros(1, 1, 16, 8), grid)
    with pytest.raises(ValueError, match="patches of shape"):
        stitch_patches(torch.zeros(3, 1, 12, 12), grid)
