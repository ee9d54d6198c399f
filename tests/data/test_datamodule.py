import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from surrogates.data.datamodule import FieldDataModule
from surrogates.data.shards import split_files
from surrogates.data.schema import SCHEMA_VERSION


def _epoch(datamodule):
    return [(batch["x"].clone(), batch["y"].clone()) for batch in datamodule.train_dataloader()]


def test_batches_do_not_depend_on_num_workers(darcy_like):
    epochs = {}
    for workers in (0, 2):
        dm = FieldDataModule(darcy_like, inputs=["a"], targets=["u"], batch_size=3, num_workers=workers, seed=7)
        dm.setup("fit")
        epochs[workers] = _epoch(dm)
    assert len(epochs[0]) == 4  # 10 samples in batches of 3
    for (x0, y0), (x2, y2) in zip(epochs[0], epochs[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_seed_changes_the_order(darcy_like):
    orders = []
    for seed in (0, 1):
        dm = FieldDataModule(darcy_like, inputs=["a"], targets=["u"], batch_size=10, seed=seed)
        dm.setup("fit")
        orders.append(_epoch(dm)[0][0])
        stored = torch.stack([dm.datasets["train"][i]["x"] for i in range(len(dm.datasets["train"]))])
    assert orders[0].shape[0] == len(stored) == 10  # one batch holds the whole training split
    assert not torch.equal(orders[0], orders[1])
    # both epochs are permutations of the stored samples: every stored sample appears exactly once in each
    # (bit for bit: the loader copies the stored float32 values, no arithmetic)
    for order in orders:
        matches = (order[:, None] == stored[None]).flatten(2).all(-1)  # matches[i, j]: batch row i is sample j
        assert torch.equal(matches.sum(0), torch.ones(len(stored), dtype=torch.long))
        assert torch.equal(matches.sum(1), torch.ones(len(stored), dtype=torch.long))


def test_val_and_test_are_not_shuffled(darcy_like):
    dm = FieldDataModule(darcy_like, inputs=["a"], targets=["u"], batch_size=4)
    dm.setup("fit")
    dm.setup("test")
    val = torch.cat([b["x"] for b in dm.val_dataloader()])
    test = torch.cat([b["x"] for b in dm.test_dataloader()])
    assert torch.equal(val, torch.stack([dm.datasets["val"][i]["x"] for i in range(4)]))
    assert test.shape == (6, 1, 8, 6)


def test_normalization_uses_the_training_split_only(darcy_like):
    import xarray as xr

    dm = FieldDataModule(darcy_like, inputs=["a", "u"], targets=["u"], batch_size=4)
    dm.setup("fit")
    with xr.open_dataset(split_files(darcy_like, "train")[0], engine="h5netcdf") as train:
        a, u = (train[name].values.astype(np.float64) for name in ("a", "u"))
    np.testing.assert_allclose(dm.input_normalizer.mean.numpy(), [a.mean(), u.mean()], rtol=1e-6)
    np.testing.assert_allclose(dm.input_normalizer.std.numpy(), [a.std(), u.std()], rtol=1e-6)
    np.testing.assert_allclose(dm.target_normalizer.mean.numpy(), [u.mean()], rtol=1e-6)
    assert abs(float(dm.input_normalizer.mean[0])) < 10  # val/test (offsets +50, -30) not included


def test_n_train_takes_the_first_samples(darcy_like):
    import xarray as xr

    dm = FieldDataModule(darcy_like, inputs=["a"], targets=["u"], batch_size=2, n_train=4)
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.train_dataloader()) == 2
    with xr.open_dataset(split_files(darcy_like, "train")[0], engine="h5netcdf") as train:
        a = train["a"].values[:4].astype(np.float64)
    np.testing.assert_allclose(dm.input_normalizer.mean.numpy(), [a.mean()], rtol=1e-6)
    with pytest.raises(ValueError, match="n_train=11 but the training split"):
        FieldDataModule(darcy_like, inputs=["a"], targets=["u"], n_train=11).setup("fit")


def test_n_train_with_time_windows_takes_every_window_of_the_first_trajectories(burgers_like):
    import xarray as xr

    # 8 trajectories of 3 states: windows 1 -> 1 start at times 0 and 1, two per trajectory
    dm = FieldDataModule(burgers_like, inputs=["u"], targets=["u"], batch_size=2, n_steps_input=1, n_steps_output=1, n_train=3)
    dm.setup("fit")
    with xr.open_dataset(split_files(burgers_like, "train")[0], engine="h5netcdf") as train:
        u = train["u"].values[:3].astype(np.float64)  # (3, time, x)
    assert len(dm.train_set) == 3 * 2
    items = torch.stack([dm.train_set[i]["x"][0] for i in range(len(dm.train_set))]).double().numpy()
    np.testing.assert_array_equal(items, u[:, :2].reshape(6, -1))  # trajectory-major, then start time
    # the statistics of exactly these windows: inputs the states at times 0, 1; targets at 1, 2
    # (float64 sums of float32 values: a few eps32 of the mean's and the spread's size)
    np.testing.assert_allclose(dm.input_normalizer.mean.numpy(), [u[:, :2].mean()], rtol=1e-6)
    np.testing.assert_allclose(dm.target_normalizer.std.numpy(), [u[:, 1:].std()], rtol=1e-6)
    with pytest.raises(ValueError, match="n_train=9 but the training split .* has 8 samples"):
        FieldDataModule(burgers_like, inputs=["u"], targets=["u"], n_steps_input=1, n_steps_output=1, n_train=9).setup("fit")


def test_hydra_lists_schema_and_channels(burgers_like):
    cfg = OmegaConf.create({"inputs": ["u", "nu"], "targets": ["u"]})
    dm = FieldDataModule(str(burgers_like), inputs=cfg.inputs, targets=cfg.targets, input_time=0, target_time=-1)
    assert dm.in_channels == 2 and dm.out_channels == 1
    dm.setup("fit")  # no val split in this folder: fit works without it
    assert dm.val_dataloader() == []
    schema = dm.data_schema()
    json.dumps(schema.to_dict())
    assert schema.pde == "tiny" and schema.schema_version == SCHEMA_VERSION
    assert schema.inputs == ("u", "nu") and schema.targets == ("u",)
    assert schema.input_time == 0 and schema.target_time == -1
    assert schema.spatial_dims == ("x",) and schema.spatial_shape == (16,)
    assert {name: var.dims for name, var in schema.variables.items()} == {"nu": (), "u": ("time", "x")}
    x = schema.coords["x"]
    assert (x.size, x.units, x.long_name, x.min, x.max) == (16, "m", "", 0.0, 15 / 16)
    assert x.spacing == pytest.approx(1 / 16, rel=4 * float(np.finfo(np.float32).eps))
    assert schema.coords["time"].units == "s"
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 2, 16) and batch["y"].shape == (8, 1, 16)


def test_missing_training_split(tmp_path):
    (tmp_path / "empty").mkdir()
    dm = FieldDataModule(tmp_path / "empty", inputs=["a"], targets=["u"])
    with pytest.raises(FileNotFoundError, match="no file for split 'train'"):
        dm.setup("fit")


# -- resumable shuffling ---------------------------------------------------------------------------
def test_shuffle_order_is_a_function_of_seed_and_epoch():
    from surrogates.data.base import EpochShuffleSampler

    sampler = EpochShuffleSampler(20, seed=3)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert sorted(epochs[0]) == list(range(20)) and epochs[0] != epochs[1] != epochs[2]
    # a new sampler (a resumed run) at epoch 2 sees epoch 2's order, whatever came before
    assert list(EpochShuffleSampler(20, seed=3, epoch=2)) == epochs[2]
    assert list(EpochShuffleSampler(20, seed=4, epoch=2)) != epochs[2]
    assert sorted(EpochShuffleSampler(20, seed=-1)) == list(range(20))  # any integer seed
    # `start` skips the first indices of one pass only
    resumed = EpochShuffleSampler(20, seed=3, epoch=1, start=6)
    assert len(resumed) == 20 and list(resumed) == epochs[1][6:] and list(resumed) == epochs[1]


def test_loader_started_mid_epoch_gives_the_remaining_batches(darcy_like):
    from surrogates.data.base import make_loader

    dm = FieldDataModule(darcy_like, inputs=["a"], targets=["u"], batch_size=3, seed=7)
    dm.setup("fit")
    whole = make_loader(dm.train_set, 3, True, 7, 0, False, epoch=1)
    rest = make_loader(dm.train_set, 3, True, 7, 0, False, epoch=1, start_batch=2)
    assert len(rest) == len(whole) == 4  # Lightning counts the batches already trained itself
    expected = [b["x"] for b in whole][2:]
    got = [b["x"] for b in rest]
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_loaders_do_not_draw_from_the_global_generator(darcy_like):
    dm = FieldDataModule(darcy_like, inputs=["a"], targets=["u"], batch_size=3, seed=7)
    dm.setup("fit")
    state = torch.get_rng_state()
    for _ in range(2):
        list(dm.train_dataloader())
    assert torch.equal(torch.get_rng_state(), state)  # the state a resumed run restores is left alone


def test_the_schema_records_a_relative_folder_as_absolute(darcy_like, monkeypatch):
    """evaluation reads the folder again from its own working directory: a relative path would name another one"""
    monkeypatch.chdir(darcy_like.parent)
    dm = FieldDataModule(darcy_like.name, inputs=["a"], targets=["u"], batch_size=2)
    dm.setup("fit")
    source = dm.data_schema().source
    assert source == str(darcy_like.absolute()) and split_files(source, "test")


@pytest.mark.parametrize("option", ["n_train", "batch_size", "num_workers", "seed", "input_time", "target_time"])
def test_a_count_with_a_fraction_is_refused_not_truncated(darcy_like, option):
    with pytest.raises(ValueError, match=rf"^{option} must be an integer, got 1\.5$"):
        FieldDataModule(darcy_like, inputs=["a"], targets=["u"], **{option: 1.5})
    with pytest.raises(ValueError, match=r"invalid literal for int\(\) with base 10: 'abc'"):  # the commands name the option
        FieldDataModule(darcy_like, inputs=["a"], targets=["u"], **{option: "abc"})
    assert getattr(FieldDataModule(darcy_like, inputs=["a"], targets=["u"], **{option: 2.0}), option) == 2


@pytest.mark.parametrize("option", ["n_train", "n_val", "n_test", "n_steps_input", "n_steps_output"])
def test_a_count_with_a_fraction_is_refused_by_the_autoregressive_datamodule(tmp_path, option):
    from surrogates.data.autoregressive import AutoregressiveDataModule

    with pytest.raises(ValueError, match=rf"^{option} must be an integer, got 2\.5$"):
        AutoregressiveDataModule(tmp_path, inputs=["u"], **{option: 2.5})
