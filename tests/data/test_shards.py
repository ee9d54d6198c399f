import shutil
from pathlib import Path

import numpy as np
import pytest

from surrogates.data.schema import DatasetFileError
from surrogates.data.shards import check_same_coordinates, has_split, is_complete, shard_path, split_files
from surrogates.data.temporaries import temporary_path
from surrogates.data.writer import write_dataset
from tests.data.conftest import stationary


def _write(path, n=2):
    fields, variables, coords, attrs = stationary(n)
    return write_dataset(path, fields, variables, coords, attrs)


def test_shard_names(tmp_path):
    assert shard_path(tmp_path, "train") == tmp_path / "train.h5"
    assert shard_path(tmp_path, "train", 3, 8) == tmp_path / "train-00003-of-00008.h5"
    with pytest.raises(ValueError, match="0 <= shard < num_shards"):
        shard_path(tmp_path, "train", 8, 8)
    with pytest.raises(ValueError, match="invalid split"):
        shard_path(tmp_path, "a/b")


def test_split_files_in_shard_order(tmp_path):
    for shard in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9):  # written out of order, 11 shards
        _write(shard_path(tmp_path, "train", shard, 11))
    _write(shard_path(tmp_path, "val"))
    files = split_files(tmp_path, "train")
    assert [f.name for f in files] == [f"train-{i:05d}-of-00011.h5" for i in range(11)]
    assert split_files(tmp_path, "val") == [tmp_path / "val.h5"]
    assert has_split(tmp_path, "train") and has_split(tmp_path, "val") and not has_split(tmp_path, "test")


def test_missing_shards_are_named(tmp_path):
    for shard in (0, 2):
        _write(shard_path(tmp_path, "train", shard, 4))
    with pytest.raises(FileNotFoundError, match=r"incomplete: 2 of 4 shards missing \(shard 1, 3\)"):
        split_files(tmp_path, "train")


def test_missing_split_lists_the_folder(tmp_path):
    _write(shard_path(tmp_path, "train"))
    with pytest.raises(FileNotFoundError, match=r"no file for split 'test' .* holds: train.h5"):
        split_files(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        split_files(tmp_path / "nowhere", "train")


def test_mixed_layouts_are_refused(tmp_path):
    _write(shard_path(tmp_path, "train"))
    _write(shard_path(tmp_path, "train", 0, 2))
    with pytest.raises(FileNotFoundError, match="both train.h5 and shards"):
        split_files(tmp_path, "train")


def test_is_complete(tmp_path):
    path = shard_path(tmp_path, "train", 1, 2)
    assert not is_complete(path)
    temporary_path(path).write_bytes(b"\x89HDF\r\n")  # an interrupted write's leftover
    assert not is_complete(path)
    _write(path)
    assert is_complete(path)
    path.write_bytes(path.read_bytes()[:100])
    assert not is_complete(path)


def _write_part(root, split, shard, num_shards, n=2, n_total=None, **attrs):
    """A shard whose first value of ``a`` is its id: 100 * shard + sample (plus 1000 in the test split)."""
    fields, variables, coords, base = stationary(n, seed=shard)
    fields["a"][:, 0, 0] = 1000 * (split == "test") + 100 * shard + np.arange(n)
    extra = {"split": split, "shard": shard, "num_shards": num_shards, "n_total": n_total or n * num_shards}
    return write_dataset(shard_path(root, split, shard, num_shards), fields, variables, coords, {**base, **extra, **attrs})


def test_a_shard_copied_over_another_is_refused(tmp_path):
    for shard in range(2):
        _write_part(tmp_path, "train", shard, 2)
    assert len(split_files(tmp_path, "train")) == 2
    shutil.copy(shard_path(tmp_path, "train", 0, 2), shard_path(tmp_path, "train", 1, 2))  # shard 1 lost, 0 twice
    with pytest.raises(DatasetFileError, match=r"train-00001-of-00002.h5: holds shard 0 .* read as shard 1 of split 'train'"):
        split_files(tmp_path, "train")


def test_another_splits_files_copied_in_are_refused(tmp_path):
    for split in ("train", "test"):
        for shard in range(2):
            _write_part(tmp_path, split, shard, 2)
    for shard in range(2):  # the test split replaced by the training data
        shutil.copy(shard_path(tmp_path, "train", shard, 2), shard_path(tmp_path, "test", shard, 2))
    with pytest.raises(DatasetFileError, match=r"test-00000-of-00002.h5: holds split 'train' .* read as part of split 'test'"):
        split_files(tmp_path, "test")
    shutil.copy(shard_path(tmp_path, "train", 0, 2), tmp_path / "val.h5")  # a single file too
    with pytest.raises(DatasetFileError, match=r"val.h5: holds split 'train'"):
        split_files(tmp_path, "val")


def test_shards_of_another_layout_and_lost_samples_are_refused(tmp_path):
    _write_part(tmp_path, "train", 0, 3)
    (tmp_path / "train-00000-of-00003.h5").rename(tmp_path / "train-00000-of-00001.h5")  # renamed into one shard of 1
    with pytest.raises(DatasetFileError, match=r"is one of 3 shards .* split 'train' has 1 file"):
        split_files(tmp_path, "train")
    other = tmp_path / "other"
    for shard in range(2):
        _write_part(other, "train", shard, 2, n=2 + shard, n_total=6)  # 2 + 3 samples of a split of 6
    with pytest.raises(DatasetFileError, match=r"split 'train' holds 5 samples \(train-00000-of-00002.h5: 2, "
                       r"train-00001-of-00002.h5: 3\), but its files record n_total 6"):
        split_files(other, "train")


def test_files_without_part_attributes_are_read(tmp_path):
    _write(shard_path(tmp_path, "train"))  # no split, shard, num_shards, n_total: other writers' files
    assert split_files(tmp_path, "train") == [tmp_path / "train.h5"]


def test_coordinates_are_compared_exactly():
    first, other = Path("train-00000-of-00002.h5"), Path("train-00001-of-00002.h5")
    x = np.linspace(0.0, 1.0, 8)
    check_same_coordinates(first, {"x": x}, other, {"x": x.copy()})
    with pytest.raises(DatasetFileError, match=r"coordinate 'x' differs .*first difference at index 7: 1.0000000000000002"):
        check_same_coordinates(first, {"x": x}, other, {"x": np.append(x[:-1], np.nextafter(1.0, 2.0))})
    with pytest.raises(DatasetFileError, match=r"coordinate 'x' has 4 values, train-00000-of-00002.h5's has 8"):
        check_same_coordinates(first, {"x": x}, other, {"x": x[:4]})
    with pytest.raises(DatasetFileError, match=r"coordinate 'time': this file has it, train-00000-of-00002.h5 has not"):
        check_same_coordinates(first, {"x": x}, other, {"x": x, "time": x})
