import json

import numpy as np
import pytest

from surrogates.data.shards import shard_path
from surrogates.data.writer import write_dataset
from surrogates.data.xarray_view import combined_solver_report, open_split
from surrogates.data.schema import DatasetFileError
from tests.data.conftest import Coord, stationary


def test_single_file_split(darcy_like):
    with open_split(darcy_like, "val") as ds:
        assert ds["a"].dims == ("sample", "x", "y") and ds.sizes["sample"] == 4
        assert ds["x"].attrs["units"] == "m"


def test_shards_are_concatenated_along_sample(tmp_path):
    parts = []
    for shard, n in enumerate((3, 2)):
        fields, variables, coords, attrs = stationary(n, seed=shard)
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords,
                      {**attrs, "shard": shard, "num_shards": 2})
        parts.append(fields["u"])
    ds = open_split(tmp_path, "train")
    assert ds["u"].dims == ("sample", "x", "y") and ds.sizes == {"sample": 5, "x": 8, "y": 6}
    np.testing.assert_allclose(ds["u"].values, np.concatenate(parts), rtol=1e-6)
    assert ds["y"].attrs["units"] == "m" and "shard" not in ds.attrs and ds.attrs["num_shards"] == 2
    assert ds.attrs["source_files"].split() == ["train-00000-of-00002.h5", "train-00001-of-00002.h5"]
    assert json.loads(ds.attrs["solver_report"])["solves"] == 8  # both shards' 4 solves, not the first's


def test_a_sharded_split_larger_than_max_bytes_is_refused_before_loading(tmp_path):
    total = 0
    for shard, n in enumerate((3, 2)):
        fields, variables, coords, attrs = stationary(n, seed=shard)
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords,
                      {**attrs, "shard": shard, "num_shards": 2})
    with open_split(tmp_path, "train", max_bytes=None) as ds:
        total = sum(var.nbytes for var in ds.variables.values())
    with pytest.raises(MemoryError, match=r"the 2 files of this split hold .* more than max_bytes=.*max_bytes=None"):
        open_split(tmp_path, "train", max_bytes=total - 1)
    with open_split(tmp_path, "train", max_bytes=total) as ds:  # exactly the limit loads
        assert ds.sizes["sample"] == 5


def test_combined_solver_report_sums_the_shards():
    a = {"method": "pcg+amg", "rtol": 1e-10, "solves": 3, "iterations_max": 14, "iterations_mean": 12.0, "residual_max": 1e-11}
    b = {"method": "pcg+amg", "rtol": 1e-8, "solves": 1, "iterations_max": 16, "iterations_mean": 16.0, "residual_max": 5e-11}
    out = combined_solver_report([a, b])
    assert out == {"method": "pcg+amg", "rtol": [1e-10, 1e-8], "solves": 4, "iterations_max": 16,
                   "iterations_mean": 13.0, "residual_max": 5e-11}
    assert combined_solver_report([{}, {}]) == {} and combined_solver_report([a]) == a


def test_missing_shard(tmp_path):
    fields, variables, coords, attrs = stationary(2)
    write_dataset(shard_path(tmp_path, "train", 1, 2), fields, variables, coords, attrs)
    with pytest.raises(FileNotFoundError, match=r"shard 0\)"):
        open_split(tmp_path, "train")


def test_shards_with_other_coordinates_are_refused_naming_the_file(tmp_path):
    for shard, length in enumerate((1.0, 100.0)):
        fields, variables, coords, attrs = stationary(2, seed=shard)
        coords["x"] = Coord(np.linspace(0.0, length, 8), "m")
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords, attrs)
    with pytest.raises(DatasetFileError, match=r"train-00001-of-00002.h5: coordinate 'x' differs"):
        open_split(tmp_path, "train")


def test_a_shard_copied_over_another_is_refused(tmp_path):
    import shutil

    for shard in range(2):
        fields, variables, coords, attrs = stationary(2, seed=shard)
        write_dataset(shard_path(tmp_path, "train", shard, 2), fields, variables, coords,
                      {**attrs, "split": "train", "shard": shard, "num_shards": 2, "n_total": 4})
    shutil.copy(shard_path(tmp_path, "train", 0, 2), shard_path(tmp_path, "train", 1, 2))
    with pytest.raises(DatasetFileError, match=r"train-00001-of-00002.h5: holds shard 0"):
        open_split(tmp_path, "train")
