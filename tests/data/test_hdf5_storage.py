"""Files whose data live in other files (external links, external raw storage, virtual datasets) are refused
by every reader of the data layer, before a value is read (surrogates/data/hdf5_storage.py)."""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import pytest

from surrogates.data.autoregressive import AutoregressiveDataset
from surrogates.data.datamodule import FieldDataModule
from surrogates.data.dataset import FieldDataset
from surrogates.data.foreign import ForeignLayout, inspect_foreign
from surrogates.data.hdf5_storage import find_stored_elsewhere
from surrogates.data.schema import DatasetFileError, inspect_file
from surrogates.data.shards import shard_path, split_files
from surrogates.data.writer import write_dataset
from tests.data.conftest import stationary, time_dependent

KINDS = ("external link", "external raw storage", "virtual dataset")


def _replace(path: Path, name: str, kind: str, other: Path, raw: Path) -> None:
    """Make variable ``name`` of ``path`` read its values from ``other:/name`` (or the raw file ``raw``), keeping
    its dimension scales and attributes, as a hostile or careless tool would."""
    with h5py.File(path, "r+") as f:
        old = f[name]
        shape, dtype = old.shape, old.dtype
        attrs = {k: v for k, v in old.attrs.items() if k not in ("DIMENSION_LIST", "REFERENCE_LIST")}
        scales = [d[0].name if len(d) else None for d in old.dims]
        del f[name]
        if kind == "external link":
            f[name] = h5py.ExternalLink(str(other), f"/{name}")
            return
        if kind == "external raw storage":
            np.full(shape, 777.0, dtype).tofile(raw)
            size = int(np.prod(shape)) * dtype.itemsize
            new = f.create_dataset(name, shape=shape, dtype=dtype, external=[(str(raw), 0, size)])
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(other), name, shape=shape)
            new = f.create_virtual_dataset(name, layout, fillvalue=np.nan)
        for i, scale in enumerate(scales):
            if scale is not None:
                new.dims[i].attach_scale(f[scale])
        new.attrs.update(attrs)


@pytest.fixture
def split_folder(tmp_path) -> Path:
    """train / val / test of a 2D problem; the test split's values differ clearly from the others."""
    for split, offset, seed in (("train", 0.0, 0), ("val", 0.0, 1), ("test", 500.0, 2)):
        fields, variables, coords, attrs = stationary(6, offset=offset, seed=seed)
        write_dataset(shard_path(tmp_path, split), fields, variables, coords, {**attrs, "split": split})
    return tmp_path


@pytest.mark.parametrize("kind", KINDS)
def test_a_split_reading_another_file_is_refused(split_folder, kind):
    train, test = shard_path(split_folder, "train"), shard_path(split_folder, "test")
    _replace(train, "u", kind, test, split_folder / "raw.bin")
    with pytest.raises(DatasetFileError) as error:
        inspect_file(train)
    message = str(error.value)
    assert message.startswith(str(train)) and "'u'" in message and kind.split()[0] in message, message
    datamodule = FieldDataModule(split_folder, ["a"], ["u"], batch_size=2)
    with pytest.raises(DatasetFileError, match="'u'"):  # training never uses the test split's values
        datamodule.setup("fit")


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_changed_after_inspection_is_refused_when_a_worker_opens_it(split_folder, kind):
    train, test = shard_path(split_folder, "train"), shard_path(split_folder, "test")
    ds = FieldDataset(split_files(split_folder, "train"), ["a"], ["u"])
    _replace(train, "u", kind, test, split_folder / "raw.bin")
    with pytest.raises(DatasetFileError, match="'u'") as error:
        ds[0]
    assert str(error.value).startswith(str(train))
    assert not ds._files._handles  # the refused handle was closed, not kept


def test_autoregressive_workers_check_too(tmp_path):
    for split, seed in (("train", 0), ("test", 1)):
        fields, variables, coords, attrs = time_dependent(4, seed=seed)
        write_dataset(shard_path(tmp_path, split), fields, variables, coords, attrs)
    ds = AutoregressiveDataset(split_files(tmp_path, "train"), ["u"], ["nu"])
    _replace(shard_path(tmp_path, "train"), "u", "external link", shard_path(tmp_path, "test"), tmp_path / "raw.bin")
    with pytest.raises(DatasetFileError, match="external link"):
        ds[0]


@pytest.mark.parametrize("kind", KINDS)
def test_foreign_files_reading_another_file_are_refused(tmp_path, kind):
    path, other = tmp_path / "foreign.nc", tmp_path / "other.nc"
    for target in (path, other):
        with h5netcdf.File(target, "w") as f:
            f.dimensions = {"sample": 5, "x": 4}
            f.create_variable("x", ("x",), data=np.linspace(0, 1, 4))
            f.create_variable("a", ("sample", "x"), data=np.ones((5, 4), "f4"))
            f.create_variable("u", ("sample", "x"), data=np.ones((5, 4), "f4"))
    _replace(path, "a", kind, other, tmp_path / "secret.bin")
    for check_finite in (True, False):
        with pytest.raises(DatasetFileError, match="'a'"):
            inspect_foreign(path, ForeignLayout(), check_finite=check_finite)
        with pytest.raises(DatasetFileError, match="'a'"):
            FieldDataset([path], ["a"], ["u"], layout=ForeignLayout(), check_finite=check_finite)


def test_links_inside_the_file_and_nested_groups_are_walked(tmp_path):
    path = tmp_path / "groups.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("g/h/data", data=np.zeros(3))
        f["alias"] = h5py.SoftLink("/g/h/data")  # inside the file: fine
        f["dangling"] = h5py.SoftLink("/nowhere")
    with h5py.File(path, "r") as f:
        assert find_stored_elsewhere(f) is None
    with h5py.File(path, "r+") as f:
        f["g/h/far"] = h5py.ExternalLink("other.h5", "/x")  # the other file need not exist: it is never opened
    with h5py.File(path, "r") as f:
        found = find_stored_elsewhere(f)
    assert (found.name, found.kind, found.target) == ("g/h/far", "external link", "other.h5:/x")
    assert "other.h5" not in found.describe(with_target=False)
