"""Generation writes each chunk of samples as soon as it is solved: a split is never held in memory whole."""

from __future__ import annotations

import gc
import weakref

import h5py
import numpy as np

from surrogates.data.generation import generate_dataset
from surrogates.pdes.ks import KuramotoSivashinsky


class _Watched(KuramotoSivashinsky):
    """KS whose solved chunks are watched: when a chunk is asked for, how many earlier chunks' fields are alive."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunks: list[list[weakref.ref]] = []
        self.alive_at_request: list[int] = []

    def generate(self, n, rng):
        gc.collect()
        self.alive_at_request.append(sum(any(ref() is not None for ref in refs) for refs in self.chunks))
        fields, report = super().generate(n, rng)
        self.chunks.append([weakref.ref(values) for values in fields.values()])
        return fields, report


def _pde() -> _Watched:
    return _Watched(resolution=32, solver_resolution=32, length=32.0, n_steps=6, substeps=1, transient_time=1.0)


def test_no_earlier_chunk_is_kept_while_the_next_is_solved(tmp_path):
    for overwrite in (False, True):  # the resumable and the staged (published together) runs
        pde = _pde()
        generate_dataset(pde, tmp_path / "d", {"train": 20, "val": 4}, chunk_size=4, progress=False, overwrite=overwrite)
        assert len(pde.chunks) == 6
        # at most the last chunk (still bound in the loop) is alive; before, every chunk of the split was, until the
        # file was written: [0, 1, 2, 3, 4, 0]
        assert max(pde.alive_at_request) <= 1 and pde.alive_at_request[5] == 0


def test_the_file_holds_every_chunk_in_order(tmp_path):
    # chunk by chunk or all at once: the same samples at the same places (a chunk's seed is its first index)
    generate_dataset(_pde(), tmp_path / "a", {"train": 12}, chunk_size=4, progress=False)
    generate_dataset(_pde(), tmp_path / "b", {"train": 12}, chunk_size=4, progress=False, num_shards=3, shard=1)
    with h5py.File(tmp_path / "a" / "train.h5") as whole, h5py.File(next((tmp_path / "b").glob("train*.h5"))) as shard:
        assert shard["u"].shape[0] == 4
        assert np.array_equal(whole["u"][4:8], shard["u"][...])
        assert whole.attrs["created"] and whole.attrs["solver_report"]  # filled in once every sample is written
