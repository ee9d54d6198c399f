import pytest

from surrogates.data.shards import has_split, is_complete, shard_path, split_files
from surrogates.data.writer import temporary_path, write_dataset
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
