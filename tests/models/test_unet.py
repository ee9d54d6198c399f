"""U-Net: configuration round trip, shapes and the padding rule, conditioning, periodic symmetry,
checkpoints through the training task and `Surrogate.load`, and a short training run."""

from __future__ import annotations

import math

import pytest
import torch

from surrogates.checkpoint import build_model
from surrogates.models.unet import UNet
from tests.models.conftest import assert_surrogate_matches_task, fit_and_checkpoint


def _structure(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def test_init_config_round_trip():
    model = UNet(2, 3, dim=1, hidden_channels=8, channel_multipliers=(1, 2), blocks_per_level=2,
                 padding_mode="circular", n_cond=2, positional_embedding=True, grid="periodic")
    config = model.init_config()
    assert config["name"] == "unet"
    assert config["kwargs"]["channel_multipliers"] == [1, 2]
    rebuilt = build_model(config)
    assert _structure(rebuilt) == _structure(model)
    assert rebuilt.init_config() == config


@pytest.mark.parametrize(
    "dim, sizes", [(1, [64]), (1, [37]), (1, [5]), (2, [32, 32]), (2, [17, 30]), (2, [24, 9])]
)
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_output_shapes_on_any_size(dim, sizes, padding_mode):
    model = UNet(2, 3, dim=dim, hidden_channels=8, channel_multipliers=[1, 2, 2], padding_mode=padding_mode)
    out = model(torch.randn(2, 2, *sizes))
    assert out.shape == (2, 3, *sizes)


def test_padded_sizes():
    """Sizes are padded up to the next multiple of 2^(levels - 1) = 4 and cropped back."""
    model = UNet(1, 1, dim=2, hidden_channels=4, channel_multipliers=[1, 1, 1], norm_groups=2)
    assert model._pad(torch.zeros(1, 1, 17, 30)).shape[2:] == (20, 32)
    assert model._pad(torch.zeros(1, 1, 16, 32)).shape[2:] == (16, 32)
    periodic = UNet(1, 1, dim=1, hidden_channels=4, channel_multipliers=[1, 1, 1, 1], padding_mode="circular")
    x = torch.arange(3.0).view(1, 1, 3)
    torch.testing.assert_close(periodic._pad(x)[0, 0], torch.tensor([0.0, 1, 2, 0, 1, 2, 0, 1]))


def test_circular_unet_commutes_with_shifts():
    """Circular padding and GroupNorm: shifts by multiples of 2^(levels - 1) commute with the model."""
    torch.manual_seed(0)
    model = UNet(1, 1, dim=2, hidden_channels=8, channel_multipliers=[1, 2, 2], padding_mode="circular").double()
    x = torch.randn(2, 1, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(model(torch.roll(x, (4, 8), (2, 3))), torch.roll(model(x), (4, 8), (2, 3)))


def test_conditioning():
    torch.manual_seed(0)
    model = UNet(1, 1, dim=1, hidden_channels=8, channel_multipliers=[1, 2], n_cond=2)
    x = torch.randn(1, 1, 32).expand(3, 1, 32)
    cond = torch.tensor([[0.0, 1.0], [0.0, 1.0], [3.0, 1.0]])
    out = model(x, cond)
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], out[2])
    with pytest.raises(ValueError, match=r"conditioned on 2 scalars"):
        model(x)
    with pytest.raises(ValueError, match=r"cond must have shape \(batch, 2\)"):
        model(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="takes no conditioning"):
        UNet(1, 1, dim=1, hidden_channels=8, channel_multipliers=[1, 2])(x, cond)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(dim=3), "UNet supports dim 1 or 2, got 3"), (dict(padding_mode="reflect"), "padding_mode must be one of .*, got 'reflect'"),
     (dict(channel_multipliers=[]), r"channel_multipliers must be a non-empty list of positive ints, got \[\]"),
     (dict(channel_multipliers=[1, 0]), r"channel_multipliers must be a non-empty list of positive ints, got \[1, 0\]"),
     (dict(blocks_per_level=0), "blocks_per_level must be >= 1, got 0"), (dict(n_cond=-1), "n_cond must be >= 0, got -1")],
)
def test_bad_constructor_arguments(kwargs, message):
    # the message names the argument at fault and its value: a ValueError from elsewhere would not match
    with pytest.raises(ValueError, match=message):
        UNet(1, 1, **kwargs)


def test_wrong_input_raises_with_expected_shape():
    with pytest.raises(ValueError, match=r"\(batch, 1, n1\)"):
        UNet(1, 1, dim=1, hidden_channels=8, channel_multipliers=[1])(torch.randn(2, 1, 8, 8))


def test_checkpoint_round_trip_through_the_task_and_surrogate(burgers_dir, tmp_path):
    torch.manual_seed(0)
    net = UNet(1, 1, dim=1, hidden_channels=8, channel_multipliers=[1, 2], padding_mode="circular")
    task, best = fit_and_checkpoint(net, burgers_dir, tmp_path, inputs=["u"], targets=["u"], input_time=0,
                                    target_time=-1)
    assert best.is_file()
    assert_surrogate_matches_task(task, best, torch.randn(3, 1, 64))


def test_short_training_reduces_the_error():
    """200 Adam steps learning a periodic 1D smoothing plus square: relative L2 falls at least 5x.

    Measured: from about 1.6 to about 0.09 on held-out inputs; one CPU thread, about 10 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)

        def sample(n_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            x = torch.arange(64) / 64
            k = torch.arange(1, 6)
            c = torch.randn(n_samples, 2, 5, generator=g) / k
            a = c[:, 0] @ torch.cos(2 * math.pi * k[:, None] * x) + c[:, 1] @ torch.sin(2 * math.pi * k[:, None] * x)
            smooth = (c[:, 0] / (1 + k**2)) @ torch.cos(2 * math.pi * k[:, None] * x) + (
                c[:, 1] / (1 + k**2)) @ torch.sin(2 * math.pi * k[:, None] * x)
            return a[:, None], (smooth + smooth**2)[:, None]

        a, u = sample(128, 1)
        model = UNet(1, 1, dim=1, hidden_channels=16, channel_multipliers=[1, 2, 2], padding_mode="circular")

        def error(pred, target):
            return ((pred - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)).mean()

        with torch.no_grad():
            initial = error(model(a), u).item()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(200):
            batch = torch.randint(0, len(a), (16,), generator=g)
            loss = error(model(a[batch]), u[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        test_a, test_u = sample(32, 2)
        with torch.no_grad():
            final = error(model(test_a), test_u).item()
    finally:
        torch.set_num_threads(threads)
    assert final < initial / 5, (initial, final)
