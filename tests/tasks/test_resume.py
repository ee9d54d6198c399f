"""What a resumable checkpoint holds: the global random state, the collocation sampler, the best score."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from surrogates.data.collocation import CollocationDataModule
from surrogates.pdes.physics import Helmholtz2D
from surrogates.tasks.resume import RunCheckpoint, get_random_state, set_random_state


def _weights_only_round_trip(value):
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(), [random.random() for _ in range(3)]


def test_random_state_round_trips_through_a_weights_only_file():
    np.random.randn()  # leaves a cached Gaussian in numpy's state: it must travel too
    state = _weights_only_round_trip(get_random_state())
    expected = _draws()
    _draws()
    set_random_state(state)
    assert _draws() == expected


def test_collocation_sampler_state_round_trips():
    problem = Helmholtz2D()
    dm = CollocationDataModule(problem, inputs=list(problem.coordinates), n_collocation=16, n_boundary=4, steps_per_epoch=5)
    dm.next_batch()
    state = _weights_only_round_trip(dm.state_dict())
    expected = dm.next_batch()["collocation"]
    other = CollocationDataModule(problem, inputs=list(problem.coordinates), n_collocation=16, n_boundary=4, steps_per_epoch=5)
    other.load_state_dict(state)
    assert torch.equal(other.next_batch()["collocation"], expected)


def test_run_checkpoint_keeps_lightnings_state_key_and_the_best_score_in_another_folder(tmp_path):
    first = RunCheckpoint(dirpath=tmp_path / "a", filename="best", monitor="val/rel_l2")
    assert first.state_key.startswith("ModelCheckpoint{")  # what checkpoint readers look for
    first.best_model_score = torch.tensor(0.25)
    first.best_model_path = str(tmp_path / "a" / "best.ckpt")
    first.best_k_models = {first.best_model_path: first.best_model_score}
    state = first.state_dict()

    moved = RunCheckpoint(dirpath=tmp_path / "b", filename="best", monitor="val/rel_l2")
    moved.load_state_dict(state)
    assert float(moved.best_model_score) == 0.25 and moved.best_model_path == first.best_model_path
    assert moved.last_model_path == ""
