"""Files opened by the reading process: lazily, never through a handle inherited by fork or pickling, at most
MAX_OPEN_FILES at once, and re-checked for data stored elsewhere on every open."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from surrogates.data import worker_files
from surrogates.data.schema import DatasetFileError
from surrogates.data.worker_files import WorkerFiles


@pytest.fixture
def files(tmp_path):
    paths = []
    for k in range(3):
        path = tmp_path / f"f{k}.h5"
        with h5py.File(path, "w") as f:
            f["u"] = np.full((2, 4), float(k))
            f["v"] = np.arange(2.0)
        paths.append(path)
    return paths


def test_opened_on_first_read_and_bounded_least_recently_used_first(files, monkeypatch):
    monkeypatch.setattr(worker_files, "MAX_OPEN_FILES", 2)
    opened = WorkerFiles(files, ["u", "v", "u"])
    assert opened.open_files == [] and opened.names == ["u", "v"]
    assert [float(opened.variables(k)["u"][0, 0]) for k in (0, 1, 0, 2)] == [0.0, 1.0, 0.0, 2.0]
    assert opened.open_files == [0, 2]  # file 1 was the least recently read
    opened.close()
    assert opened.open_files == []


def test_a_pickled_or_forked_copy_opens_its_own_handles(files):
    opened = WorkerFiles(files, ["u"])
    parent = opened.variables(0)["u"]
    clone = pickle.loads(pickle.dumps(opened))  # what a spawned worker receives
    assert clone.open_files == [] and float(clone.variables(0)["u"][1, 3]) == 0.0
    opened._pid = -1  # as seen from a forked worker: the pid differs
    assert opened.open_files == []
    assert opened.variables(0)["u"] is not parent and parent.id.valid  # the parent's handle is left alone


def test_a_file_that_now_reads_another_is_refused_and_not_kept(files, tmp_path):
    opened = WorkerFiles(files, ["u"])
    files[1].unlink()
    with h5py.File(files[1], "w") as f:
        f["u"] = h5py.ExternalLink(str(files[0]), "u")
    with pytest.raises(DatasetFileError, match="f1.h5"):
        opened.variables(1)
    assert opened.open_files == []
