"""U-Net building blocks: sinusoidal and conditioning embeddings, residual blocks, resampling."""

from __future__ import annotations

import math

import pytest
import torch

from surrogates.nn.unet_blocks import ConditionEmbedding, Downsample, ResidualBlock, SinusoidalEmbedding, Upsample


def test_sinusoidal_embedding_values():
    embedding = SinusoidalEmbedding(8, max_period=10000.0)
    c = torch.tensor([[0.0, 2.0]])
    out = embedding(c)
    assert out.shape == (1, 2, 8)
    frequencies = 10000.0 ** (-torch.arange(4) / 4)
    torch.testing.assert_close(out[0, 1, :4], torch.sin(2.0 * frequencies))
    torch.testing.assert_close(out[0, 1, 4:], torch.cos(2.0 * frequencies))
    torch.testing.assert_close(out[0, 0], torch.cat([torch.zeros(4), torch.ones(4)]))
    with pytest.raises(ValueError, match="^features must be an even number >= 2, got 7$"):
        SinusoidalEmbedding(7)


def test_condition_embedding_shape():
    embedding = ConditionEmbedding(n_cond=3, channels=16, features=8)
    assert embedding(torch.rand(5, 3)).shape == (5, 16)
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        embedding(torch.rand(5))


@pytest.mark.parametrize("dim", [1, 2])
def test_residual_block(dim):
    torch.manual_seed(0)
    x = torch.randn(2, 8, *[12] * dim)
    plain = ResidualBlock(dim, 8, 16, norm_groups=4)
    assert plain(x).shape == (2, 16, *[12] * dim)
    conditioned = ResidualBlock(dim, 8, 8, cond_channels=6, norm_groups=4, padding_mode="circular")
    with pytest.raises(ValueError, match="conditioning vector"):
        conditioned(x)
    # FiLM starts from the block's unconditioned output when the projection is zero.
    torch.nn.init.zeros_(conditioned.film.weight)
    torch.nn.init.zeros_(conditioned.film.bias)
    expected = conditioned.conv2(torch.nn.functional.gelu(conditioned.norm2(
        conditioned.conv1(torch.nn.functional.gelu(conditioned.norm1(x)))))) + x
    torch.testing.assert_close(conditioned(x, torch.randn(2, 6)), expected)


def test_group_count_divides_channels():
    block = ResidualBlock(1, 6, 12, norm_groups=8)
    assert block.norm1.num_groups == math.gcd(6, 8) and block.norm2.num_groups == 4


@pytest.mark.parametrize("dim", [1, 2])
def test_resampling_shapes(dim):
    x = torch.randn(2, 4, *[16] * dim)
    assert Downsample(dim, 4)(x).shape == (2, 4, *[8] * dim)
    assert Upsample(dim, 4, padding_mode="circular")(x).shape == (2, 4, *[32] * dim)
