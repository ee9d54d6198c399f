import pickle

import numpy as np
import pytest
import torch

from surrogates.data.dataset import FieldDataset
from surrogates.data.schema import DatasetFileError
from surrogates.data.shards import shard_path, split_files
from surrogates.data.writer import write_dataset
from tests.data.conftest import Coord, stationary, time_dependent


def test_stationary_2d_sample(darcy_like):
    ds = FieldDataset(split_files(darcy_like, "train"), ["a"], ["u"])
    assert len(ds) == 10 and ds.spatial_dims == ("x", "y") and ds.spatial_shape == (8, 6)
    item = ds[3]
    assert item["x"].shape == (1, 8, 6) and item["y"].shape == (1, 8, 6)
    assert item["x"].dtype == torch.float32
    fields = stationary(10, offset=0.0, seed=0)[0]
    np.testing.assert_allclose(item["x"][0].numpy(), fields["a"][3], rtol=1e-6)
    np.testing.assert_allclose(ds[-1]["y"][0].numpy(), fields["u"][9], rtol=1e-6)
    np.testing.assert_allclose(ds.coords["y"], np.linspace(0, 2, 6))
    assert ds.attrs["pde"] == "tiny"
    with pytest.raises(IndexError):
        ds[10]


def test_several_channels(darcy_like):
    ds = FieldDataset(split_files(darcy_like, "train"), ["a", "u"], ["u"])
    item = ds[0]
    assert item["x"].shape == (2, 8, 6)
    torch.testing.assert_close(item["x"][1], item["y"][0])


def test_time_dependent_1d_with_scalar_broadcast(burgers_like):
    files = split_files(burgers_like, "train")
    fields = time_dependent(8, seed=0)[0]
    ds = FieldDataset(files, ["u", "nu"], ["u"], input_time=0, target_time=-1)
    assert ds.spatial_dims == ("x",) and ds.spatial_shape == (16,)
    item = ds[2]
    assert item["x"].shape == (2, 16) and item["y"].shape == (1, 16)
    np.testing.assert_allclose(item["x"][0].numpy(), fields["u"][2, 0], rtol=1e-6)
    np.testing.assert_allclose(item["y"][0].numpy(), fields["u"][2, -1], rtol=1e-6)
    np.testing.assert_allclose(item["x"][1].numpy(), np.full(16, fields["nu"][2]), rtol=1e-6)
    assert set(ds.coords) == {"time", "x"}


def test_time_index_is_required_and_checked(burgers_like):
    files = split_files(burgers_like, "train")
    with pytest.raises(ValueError, match=r"'u' .* has a time dim of length 3 .* pass target_time="):
        FieldDataset(files, ["u"], ["u"], input_time=0)
    with pytest.raises(ValueError, match="input_time=3 is out of range"):
        FieldDataset(files, ["u"], ["u"], input_time=3, target_time=0)


def test_unknown_variable_is_reported_up_front(darcy_like):
    with pytest.raises(DatasetFileError, match=r"missing variable\(s\) \['p'\]; available: a \(sample, x, y\)"):
        FieldDataset(split_files(darcy_like, "train"), ["a"], ["p"])


def test_nan_is_reported_when_the_dataset_is_built(tmp_path):
    import h5py

    fields, variables, coords, attrs = stationary(4)
    path = write_dataset(tmp_path / "train.h5", fields, variables, coords, attrs)
    with h5py.File(path, "r+") as f:  # damage the file after it was written
        f["u"][2, 0, 0] = np.nan
    with pytest.raises(DatasetFileError, match="'u' contains NaN or inf at sample 2"):
        FieldDataset([path], ["a"], ["u"])
    assert len(FieldDataset([path], ["a"], ["u"], check_finite=False)) == 4


def test_samples_span_shards(tmp_path):
    expected = []
    for shard, n in enumerate((3, 1, 4)):
        fields, variables, coords, attrs = stationary(n, seed=shard)
        write_dataset(shard_path(tmp_path, "train", shard, 3), fields, variables, coords, attrs)
        expected.extend(fields["a"])
    ds = FieldDataset(split_files(tmp_path, "train"), ["a"], ["u"])
    assert len(ds) == 8 and ds.locate(4) == (shard_path(tmp_path, "train", 2, 3), 0)
    for i in range(8):
        np.testing.assert_allclose(ds[i]["x"][0].numpy(), expected[i], rtol=1e-6)


def test_shards_with_different_grids_are_refused(tmp_path):
    for shard, nx in enumerate((8, 9)):
        fields, variables, coords, attrs = stationary(2, nx=nx)
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords, attrs)
    with pytest.raises(DatasetFileError, match="all files of a split must have the same layout"):
        FieldDataset(split_files(tmp_path, "train"), ["a"], ["u"])


def test_shards_with_other_coordinate_values_are_refused(tmp_path):
    # same shapes, another grid: read with the first shard's coordinates, the samples of shard 1 would be misplaced
    for shard, length in enumerate((1.0, 100.0)):
        fields, variables, coords, attrs = stationary(2, seed=shard)
        coords["x"] = Coord(np.linspace(0.0, length, 8), "m")
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords, attrs)
    with pytest.raises(DatasetFileError, match=r"train-00001-of-00002.h5: coordinate 'x' differs from "
                       r"train-00000-of-00002.h5's: \[0.0 .. 100.0\] \(8 values\) here, \[0.0 .. 1.0\]"):
        FieldDataset(split_files(tmp_path, "train"), ["a"], ["u"])


def test_shards_with_other_times_are_refused(tmp_path):
    for shard, end in enumerate((1.0, 2.0)):  # trajectories stored at other times
        fields, variables, coords, attrs = time_dependent(2, seed=shard)
        coords["time"] = Coord(np.linspace(0.0, end, 3), "s")
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords, attrs)
    with pytest.raises(DatasetFileError, match="coordinate 'time' differs"):
        FieldDataset(split_files(tmp_path, "train"), ["u"], ["u"], input_time=0, target_time=-1)


def test_picklable_after_use_without_handles(darcy_like):
    ds = FieldDataset(split_files(darcy_like, "train"), ["a"], ["u"])
    first = ds[0]
    assert ds._files._handles  # a handle is open in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._files._handles and clone._files._pid is None
    torch.testing.assert_close(clone[0]["x"], first["x"])
    ds.close()
    assert not ds._files._handles
    torch.testing.assert_close(ds[0]["y"], first["y"])  # reopened on demand


def test_handle_is_reopened_in_another_process(darcy_like):
    ds = FieldDataset(split_files(darcy_like, "train"), ["a"], ["u"])
    ds[0]
    parent_handle = ds._files._handles[0][0]
    ds._files._pid = -1  # as seen from a forked worker: the pid differs
    ds[1]
    assert ds._files._handles[0][0] is not parent_handle and parent_handle.id.valid


def test_open_handles_are_bounded(tmp_path, monkeypatch):
    from surrogates.data import worker_files

    for shard in range(3):
        fields, variables, coords, attrs = stationary(2, seed=shard)
        write_dataset(shard_path(tmp_path, "train", shard, 3), fields, variables, coords, attrs)
    monkeypatch.setattr(worker_files, "MAX_OPEN_FILES", 2)
    ds = FieldDataset(split_files(tmp_path, "train"), ["a"], ["u"])
    first = [ds[i]["x"] for i in range(6)]
    assert list(ds._files._handles) == [1, 2]
    torch.testing.assert_close(ds[0]["x"], first[0])  # reopened
    assert list(ds._files._handles) == [2, 0]
