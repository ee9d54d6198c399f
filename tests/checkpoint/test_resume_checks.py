"""Resuming (``surrogates-train ckpt_path=...``): what Lightning restores unchecked is checked first.

``check_resumable`` compared only the model's name and arguments; Lightning then loaded the ``state_dict``
and the optimizer states as they were: NaN weights resumed and trained to a NaN loss, a weight or an Adam
moment of another shape failed deep inside Lightning or Adam. The files here are tiny checkpoints of an
operator task, written as Lightning writes them (``state_dict``, ``optimizer_states``), without training.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.cli.train import check_resumable
from surrogates.errors import CheckpointError
from surrogates.models.fno import FNO
from surrogates.tasks.operator_regression import OperatorRegression


def _task() -> OperatorRegression:
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=4, projection_channels=4)
    return OperatorRegression(net, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))


def _adam_state(task: OperatorRegression) -> dict:
    """An Adam ``state_dict`` after one step on the task's parameters (moments shaped like them)."""
    adam = torch.optim.Adam(task.parameters(), lr=1e-3)
    sum(p.square().sum() for p in task.parameters()).backward()
    adam.step()
    return adam.state_dict()


def _checkpoint(path: Path, edit=None) -> Path:
    task = _task()
    meta = CheckpointMetadata(kind="operator", model=ClassSpec.from_dict(task.net.init_config(), "model"))
    write_checkpoint(path, meta, task.model.state_dict(), optimizer_states=[_adam_state(task)], epoch=1)
    if edit is not None:
        contents = torch.load(path, weights_only=True)
        edit(contents)
        torch.save(contents, path)
    return path


def test_an_intact_checkpoint_is_resumable(tmp_path):
    check_resumable(_checkpoint(tmp_path / "last.ckpt"), _task())


def _set(key: str, value):
    return lambda contents: contents["state_dict"].__setitem__(key, value(contents["state_dict"][key]))


def _moment(name: str, value):
    def edit(contents):
        state = contents["optimizer_states"][0]["state"][0]
        state[name] = value(state[name])
    return edit


LIFTING = "model.net.lifting.weight"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(LIFTING, lambda w: torch.full_like(w, float("nan"))), f"weight '{LIFTING}' holds NaN or infinite values"),
        (_set(LIFTING, lambda w: torch.zeros(3, 3)), f"weight '{LIFTING}' has shape \\(3, 3\\) in the file"),
        (_set(LIFTING, lambda w: w.long()), f"weight '{LIFTING}' is torch.int64 in the file"),
        (_set("model.input_normalizer.std", lambda s: torch.tensor([float("inf")])), "'model.input_normalizer.std' holds NaN"),
        (lambda c: c["state_dict"].pop(LIFTING), "missing \\['model.net.lifting.weight'\\]"),
        (lambda c: c["state_dict"].__setitem__("junk", torch.zeros(1)), "unexpected \\['junk'\\]"),
        (_moment("exp_avg", lambda m: torch.zeros(5)), r"optimizer_states\[0\]\['state'\]\[0\]\['exp_avg'\] is torch.float32 \(5,\)"),
        (_moment("exp_avg_sq", lambda m: m.to(torch.complex64)), r"\['exp_avg_sq'\] is torch.complex64"),
        (_moment("exp_avg", lambda m: torch.full_like(m, float("nan"))), r"\['exp_avg'\] holds NaN or infinite values"),
        (lambda c: c["optimizer_states"][0]["state"].__setitem__(999, {}), "state for parameter 999; the task has"),
        (lambda c: c.__setitem__("optimizer_states", [{"param_groups": []}]), "is not an optimizer's state_dict"),
        (lambda c: c["optimizer_states"][0]["param_groups"][0]["params"].pop(), r"\['param_groups'\] does not number the task's 18 parameters once each \(17 parameter indices\)"),
        (lambda c: c["optimizer_states"][0]["param_groups"].append({"params": [0]}), r"\(19 parameter indices\)"),
        (lambda c: c["optimizer_states"][0]["param_groups"][0]["params"].append("w"), r"\(19 parameter indices\)"),
        (lambda c: c["optimizer_states"][0].__setitem__("param_groups", {"params": []}), r"\(no list of groups with 'params' lists\)"),
    ],
)
def test_what_lightning_would_restore_unchecked_is_refused_first(tmp_path, edit, message):
    path = _checkpoint(tmp_path / "last.ckpt", edit)
    with pytest.raises(CheckpointError, match=message) as error:
        check_resumable(path, _task())
    assert str(path) in str(error.value)


def test_a_run_of_another_trainer_precision_is_resumable(tmp_path):
    # trainer.precision=64-true stores float64 weights and Adam moments; the task is built in float32 first
    def to_float64(contents):
        contents["state_dict"] = {k: v.double() if v.is_floating_point() else v for k, v in contents["state_dict"].items()}
        for state in contents["optimizer_states"][0]["state"].values():
            state.update({k: v.double() for k, v in state.items() if v.is_floating_point() and v.ndim})
    check_resumable(_checkpoint(tmp_path / "last.ckpt", to_float64), _task())


def test_lbfgs_keeps_one_flat_state_checked_for_finiteness_only(tmp_path):
    task = _task()
    n = sum(p.numel() for p in task.parameters())
    flat = {"d": torch.zeros(n), "old_dirs": [torch.zeros(n)], "prev_flat_grad": torch.zeros(n), "n_iter": 1}

    def lbfgs(contents):
        contents["optimizer_states"].append({"state": {0: flat}, "param_groups": [{"params": list(range(len(list(task.parameters()))))}]})

    check_resumable(_checkpoint(tmp_path / "last.ckpt", lbfgs), task)
    flat["old_dirs"] = [torch.full((n,), float("nan"))]
    with pytest.raises(CheckpointError, match=r"optimizer_states\[1\]\['state'\]\[0\]\['old_dirs'\] holds NaN"):
        check_resumable(_checkpoint(tmp_path / "nan.ckpt", lbfgs), task)



def test_another_model_is_refused_naming_the_values(tmp_path):
    """the message says which argument differs and both values, so the user sees the override to repeat"""
    torch.manual_seed(0)
    wider = OperatorRegression(
        FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=8, projection_channels=4),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
    )
    with pytest.raises(CheckpointError, match=r"\(width 4 -> 8; file -> configured\)"):
        check_resumable(_checkpoint(tmp_path / "last.ckpt"), wider)
