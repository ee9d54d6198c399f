"""A run killed with SIGKILL and resumed with ``ckpt_path=last`` reproduces the uninterrupted run bit for bit.

Every run is ``python -m surrogates.cli.train`` in a subprocess on the tiny Darcy fixture (6 batches an
epoch, 3 epochs, ``last.ckpt`` every 4 steps and at epochs' ends), with one intra-op thread in every
process: the same code on the same inputs with the same thread count gives the same bits
(docs/testing.md). A test-only callback records each step's loss (``tests/faults/callbacks.py``);
another kills the process before a given step. The losses of every step, the best score and the
test metrics must equal the uninterrupted run's (``==``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from surrogates.cli.train import train
from tests.cli.conftest import compose_config

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 6  # 48 training samples in batches of 8
EPOCHS = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _overrides(data_dir: Path, run_dir: Path) -> list[str]:
    return [
        "experiment=darcy_fno_demo", f"data.data_dir={data_dir}", "data.batch_size=8",
        "model.width=8", "model.modes=4", "model.n_layers=2", "model.projection_channels=16",
        f"trainer.max_epochs={EPOCHS}", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        "callbacks.model_checkpoint.last_every_n_train_steps=4", f"hydra.run.dir={run_dir}",
        "+callbacks.record._target_=tests.faults.callbacks.RecordSteps", f"+callbacks.record.path={run_dir / 'steps.txt'}",
    ]


def _train(data_dir: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "surrogates.cli.train", *_overrides(data_dir, run_dir), *extra]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _losses(run_dir: Path) -> dict[int, str]:
    """Step -> loss (hex) of every recorded step; a step recorded twice (replayed after a resume) must agree."""
    losses: dict[int, str] = {}
    for line in (run_dir / "steps.txt").read_text().splitlines():
        step, loss = line.split()
        assert losses.setdefault(int(step), loss) == loss, f"step {step} replayed with another loss"
    return losses


def _outcome(run_dir: Path) -> dict:
    """The final test metrics and the best score the run kept."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    state = next(v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint"))
    return {
        "test": {k: v for k, v in summary["metrics"].items() if k.startswith("test/")},
        "best_score": float(state["best_model_score"]),
        "best_epoch": best["epoch"],
    }


@pytest.fixture(scope="module")
def uninterrupted(darcy_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = _train(darcy_dir, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


# Kill points: before step 11 (mid-epoch 2; last.ckpt of step 8, two steps are replayed) and before
# step 13 (the first of epoch 3; last.ckpt of epoch 2's end, after its validation).
@pytest.mark.parametrize("kill_at", [10, 2 * STEPS_PER_EPOCH], ids=["mid-epoch", "epoch-boundary"])
def test_killed_and_resumed_run_reproduces_the_uninterrupted_run(darcy_dir, tmp_path, uninterrupted, kill_at):
    run_dir = tmp_path / "run"
    killed = _train(darcy_dir, run_dir, "+callbacks.kill._target_=tests.faults.callbacks.KillAtStep", f"+callbacks.kill.step={kill_at}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert max(_losses(run_dir)) == kill_at and not (run_dir / "metrics.json").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    resumed = _train(darcy_dir, run_dir, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = _losses(uninterrupted)
    assert sorted(expected) == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    assert _losses(run_dir) == expected
    assert _outcome(run_dir) == _outcome(uninterrupted)


def test_last_checkpoint_is_written_every_epoch_and_every_n_steps(uninterrupted):
    last = torch.load(uninterrupted / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == EPOCHS * STEPS_PER_EPOCH  # the end of the last epoch, improved or not
    assert {"torch", "numpy", "python"} <= set(last["callbacks"]["RandomState"])
    assert not list((uninterrupted / "checkpoints").glob(".*partial"))


def test_resume_last_without_a_checkpoint_is_one_clear_error(darcy_dir, tmp_path):
    cfg = compose_config("train", [*_overrides(darcy_dir, tmp_path)[:-2], "ckpt_path=last"], tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: no checkpoint to resume at .*empty/checkpoints/last.ckpt"):
        train(cfg)
