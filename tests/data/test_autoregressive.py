"""AutoregressiveDataset / AutoregressiveDataModule: one-step pairs of trajectories with conditioning."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from surrogates.data.autoregressive import AutoregressiveDataModule, AutoregressiveDataset
from surrogates.data.schema import DatasetFileError
from surrogates.data.shards import split_files


@pytest.fixture(scope="module")
def reference(ks_dir):
    with h5py.File(ks_dir / "train.h5", "r") as f:
        return {name: np.asarray(f[name][...]) for name in ("u", "dt", "dx")}


def test_pairs_are_consecutive_states_with_their_parameters(ks_dir, reference):
    ds = AutoregressiveDataset(split_files(ks_dir, "train"), ["u"], ["dt", "dx"])
    n, t = reference["u"].shape[:2]
    assert len(ds) == n * (t - 1) and ds.pairs_per_trajectory == t - 1
    assert ds.spatial_dims == ("x",) and ds.spatial_shape == (64,)
    for index in (0, 5, t - 2, t - 1, len(ds) - 1):
        s, i = divmod(index, t - 1)
        item = ds[index]
        assert (item["sample"], item["step"]) == (s, i)
        assert item["x"].shape == (1, 64) and item["x"].dtype == torch.float32
        np.testing.assert_array_equal(item["x"][0].numpy(), reference["u"][s, i])
        np.testing.assert_array_equal(item["y"][0].numpy(), reference["u"][s, i + 1])
        np.testing.assert_array_equal(item["params"].numpy(), [reference["dt"][s], reference["dx"][s]])
    assert ds[-1]["step"] == t - 2
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_trajectory_mode_and_limits(ks_dir, reference):
    ds = AutoregressiveDataset(split_files(ks_dir, "train"), ["u"], ["dt"], pairs=False, n_trajectories=3)
    assert len(ds) == 3
    item = ds[2]
    assert item["u"].shape == (12, 1, 64)
    np.testing.assert_array_equal(item["u"][:, 0].numpy(), reference["u"][2])
    u, p = ds.trajectories([0, 2])
    assert u.shape == (2, 12, 1, 64) and p.shape == (2, 1)
    mean, std, param_mean = ds.statistics()
    # float64 references: numpy's float32 accumulation of these 2304 values would itself carry up to
    # ~log2(n) u32 ~ 7e-7, as much as the tolerance
    u = reference["u"][:3].astype(np.float64)
    np.testing.assert_allclose(mean, [u.mean()], atol=1e-6)
    np.testing.assert_allclose(std, [u.std()], rtol=1e-5)
    np.testing.assert_allclose(param_mean, [reference["dt"][:3].astype(np.float64).mean()], rtol=1e-6)
    with pytest.raises(ValueError, match="n_trajectories"):
        AutoregressiveDataset(split_files(ks_dir, "train"), ["u"], [], n_trajectories=1000)


def test_files_are_opened_lazily_per_process(ks_dir):
    ds = AutoregressiveDataset(split_files(ks_dir, "train"), ["u"], ["dt", "dx"])
    assert ds._files._handles == {}  # nothing opened by the constructor
    ds[0]
    assert len(ds._files._handles) == 1
    clone = pickle.loads(pickle.dumps(ds))  # what a worker receives: no handles
    assert clone._files._handles == {} and clone._files._pid is None
    torch.testing.assert_close(clone[3]["x"], ds[3]["x"])
    ds._files._pid = -1  # as if inherited through fork: a new handle is opened, the parent's is not reused
    inherited = dict(ds._files._handles)
    ds[1]
    assert ds._files._handles.keys() == inherited.keys() and all(ds._files._handles[k][0] is not inherited[k][0] for k in inherited)
    ds.close()
    assert ds._files._handles == {}


def test_worker_processes_read_the_same_pairs(ks_dir):
    ds = AutoregressiveDataset(split_files(ks_dir, "train"), ["u"], ["dt", "dx"])
    ds[0]  # a handle opened in the parent before the workers start
    serial = [b["x"] for b in DataLoader(ds, batch_size=16)]
    parallel = [b["x"] for b in DataLoader(ds, batch_size=16, num_workers=2)]
    torch.testing.assert_close(torch.cat(serial), torch.cat(parallel))


def test_wrong_variables_are_reported(ks_dir, darcy_dir):
    with pytest.raises(DatasetFileError, match="per-sample scalar"):
        AutoregressiveDataset(split_files(ks_dir, "train"), ["u"], ["u"])
    with pytest.raises(DatasetFileError, match="sample, time"):
        AutoregressiveDataset(split_files(darcy_dir, "train"), ["u"], [])


def test_datamodule_statistics_schema_and_loaders(ks_dir, reference):
    dm = AutoregressiveDataModule(ks_dir, inputs=["u"], conditioning=["dt", "dx"], batch_size=8, n_train=10)
    dm.setup("fit")
    assert dm.in_channels == dm.out_channels == 1
    # float64 references (a float32 mean of 7680 values carries up to ~log2(n) u32 ~ 8e-7 itself)
    reference64 = {name: reference[name][:10].astype(np.float64) for name in ("u", "dt", "dx")}
    np.testing.assert_allclose(dm.state_normalizer.mean.numpy(), [reference64["u"].mean()], atol=1e-6)
    np.testing.assert_allclose(dm.param_scale, [reference64["dt"].mean(), reference64["dx"].mean()], rtol=1e-6)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 1, 64) and batch["params"].shape == (8, 2)
    assert len(dm.dataset("train")) == 10 * 11
    again = next(iter(dm.train_dataloader()))
    torch.testing.assert_close(batch["x"], again["x"])  # seeded shuffle
    assert len(dm.val_dataloader().dataset) == 4 * 11 and len(dm.test_dataloader().dataset) == 4 * 11
    schema = dm.data_schema()
    assert schema.kind == "trajectory" and schema.pde == "ks"
    assert schema.state == ("u",) and schema.conditioning == ("dt", "dx") and schema.n_steps == 12
    assert schema.spatial_dims == ("x",) and schema.variables["u"].dims == ("time", "x")


def test_shards_with_other_grids_are_refused(tmp_path):
    from surrogates.data.shards import shard_path
    from surrogates.data.writer import write_dataset
    from tests.data.conftest import Coord, time_dependent

    for shard, length in enumerate((1.0, 2.0)):
        fields, variables, coords, attrs = time_dependent(2, seed=shard)
        coords["x"] = Coord(np.linspace(0.0, length, 16), "m")
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords, attrs)
    with pytest.raises(DatasetFileError, match=r"train-00001-of-00002.h5: coordinate 'x' differs"):
        AutoregressiveDataset(split_files(tmp_path, "train"), ["u"], ["nu"])


def test_statistics_are_accurate_for_a_large_mean(tmp_path):
    """A field of 3e4 +- 0.01 (a temperature offset, a pressure): E[x^2] - mean^2 cancels ~17 digits.

    The one-pass formula this replaced was off by 1.4e-4 (relative) on this data. Two passes per
    trajectory and Chan's merge leave a relative error of the variance of about (log2(n) + S) eps64
    ~ (10 + 16) 1.1e-16 ~ 3e-15 (Higham, Accuracy and Stability, 2nd ed., sec. 1.9), plus the mean's
    error squared over the variance, (log2(n) eps64 3e4 / 0.01)^2 ~ 1e-17; the reference np.std carries
    as much. rtol 1e-12 on the std keeps a 100x margin for other summation orders.
    """
    from surrogates.data.writer import write_dataset
    from tests.data.conftest import Coord, Var, base_attrs

    rng = np.random.default_rng(0)
    u = (3e4 + 0.01 * rng.standard_normal((16, 8, 128))).astype(np.float32)
    fields = {"u": u, "nu": rng.uniform(0.01, 0.1, 16)}
    variables = {"u": Var(("time", "x"), "K"), "nu": Var((), "m2/s")}
    coords = {"time": Coord(np.linspace(0, 1, 8), "s"), "x": Coord(np.arange(128) / 128, "m")}
    write_dataset(tmp_path / "train.h5", fields, variables, coords, base_attrs("u nu", "u"))
    mean, std, _ = AutoregressiveDataset([tmp_path / "train.h5"], ["u"], ["nu"]).statistics()
    exact = u.astype(np.float64)
    np.testing.assert_allclose(mean, [exact.mean()], rtol=1e-14)  # (log2(n) + S) eps64, as above
    np.testing.assert_allclose(std, [exact.std()], rtol=1e-12)
