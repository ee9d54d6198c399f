"""A run killed with SIGKILL and resumed with ``ckpt_path=last`` (or ``auto``) reproduces the uninterrupted run bit for bit.

Killed and resumed runs are ``python -m surrogates.cli.train`` in subprocesses; the uninterrupted run
of the same configuration runs in this process. Every run uses one intra-op thread: the same code on
the same inputs with the same thread count gives the same bits (docs/testing.md). A test-only
callback records each step's loss (``tests/faults/callbacks.py``); another kills the process before
a given step, as a power cut would. The losses of every step (replayed steps included), the best
score and the test metrics must equal the uninterrupted run's (``==``).

The fast test trains an FNO on the tiny Darcy fixture (6 batches an epoch, 3 epochs, ``last.ckpt``
every 4 steps and at epochs' ends), kills it mid-epoch, resumes it, kills it at an epoch boundary and
resumes it to the end. The slow variants kill at one point each, and cover the global random
generators (PDE-Refiner's noise) and the collocation sampler (a PINN).
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
from surrogates.errors import CheckpointError
from tests.cli.conftest import compose_config

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
KILL = "+callbacks.kill._target_=tests.faults.callbacks.KillAtStep"

# Darcy: 48 training samples in batches of 8.
STEPS_PER_EPOCH, EPOCHS = 6, 3
DARCY = [
    "experiment=darcy_fno_demo", "data.batch_size=8", "model.width=8", "model.modes=4", "model.n_layers=2",
    "model.projection_channels=16", f"trainer.max_epochs={EPOCHS}", "callbacks.model_checkpoint.last_every_n_train_steps=4",
]
# PDE-Refiner draws noise from torch's global generator in every training step.
PDE_REFINER = [
    "experiment=ks_pde_refiner", "data.batch_size=16", "model.hidden_channels=8", "trainer.max_epochs=2",
    "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
    "task.rollout_trajectories=1", "callbacks.model_checkpoint.last_every_n_train_steps=3",
]
# A PINN draws fresh collocation points every step from its data module's generator; 3 steps an epoch.
PINN = [
    "experiment=poisson_pinn", "trainer.max_steps=9", "data.steps_per_epoch=3", "data.n_collocation=64",
    "data.n_boundary=16", "data.problem.reference_resolution=33", "data.eval_resolution=11",
    "model.width=16", "callbacks.model_checkpoint.last_every_n_train_steps=2",
]


def _recorded(overrides: list[str], run_dir: Path) -> list[str]:
    """``overrides`` on the CPU (what the guarantee covers, also on a machine with a GPU), with the per-step loss record."""
    return [
        *overrides, "trainer=cpu", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
        "+callbacks.record._target_=tests.faults.callbacks.RecordSteps", f"+callbacks.record.path={run_dir / 'steps.txt'}",
    ]


def _train_in_subprocess(overrides: list[str], run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "surrogates.cli.train", *overrides, f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _train_here(overrides: list[str], run_dir: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1)
    try:
        train(compose_config("train", overrides, run_dir))
    finally:
        torch.set_num_threads(threads)


def _killed(overrides: list[str], run_dir: Path, step: int, *extra: str) -> None:
    """Run until ``step`` steps are done, then SIGKILL; the run must leave a ``last.ckpt``."""
    result = _train_in_subprocess(overrides, run_dir, KILL, f"+callbacks.kill.step={step}", *extra)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert max(_losses(run_dir)) == step and not (run_dir / "metrics.json").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def _resumed(overrides: list[str], run_dir: Path, how: str = "last") -> None:
    result = _train_in_subprocess(overrides, run_dir, f"ckpt_path={how}")
    assert result.returncode == 0, result.stderr[-3000:]


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
        "best_step": best["global_step"],
    }


def _check_resume(overrides: list[str], tmp_path: Path, kills: list[int], n_steps: int, how: str = "last") -> Path:
    """Kill a run at each of ``kills`` (resuming it in between), finish it; compare with an uninterrupted run.

    ``how="auto"``: every command, the first included, is the same one with ``ckpt_path=auto``."""
    reference, run_dir = tmp_path / "uninterrupted", tmp_path / "run"
    _train_here(_recorded(overrides, reference), reference)
    run = _recorded(overrides, run_dir)
    for i, step in enumerate(kills):
        _killed(run, run_dir, step, *([f"ckpt_path={how}"] if i or how == "auto" else []))
    _resumed(run, run_dir, how)

    expected = _losses(reference)
    assert sorted(expected) == list(range(1, n_steps + 1))
    assert _losses(run_dir) == expected
    assert _outcome(run_dir) == _outcome(reference)
    return reference


def test_killed_twice_and_resumed_run_reproduces_the_uninterrupted_run(darcy_dir, tmp_path):
    # killed before step 11 (mid-epoch 2: last.ckpt of step 8, two steps replayed), resumed, killed before
    # step 13 (the first of epoch 3: last.ckpt of epoch 2's end, after its validation), resumed to the end
    overrides = [*DARCY, f"data.data_dir={darcy_dir}"]
    reference = _check_resume(overrides, tmp_path, kills=[10, 2 * STEPS_PER_EPOCH], n_steps=EPOCHS * STEPS_PER_EPOCH)

    # last.ckpt: written at the last epoch's end, improved or not, with the random state
    last = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert {"torch", "numpy", "python"} <= set(last["callbacks"]["RandomState"])
    assert not list((reference / "checkpoints").glob(".*partial"))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [4, STEPS_PER_EPOCH], ids=["mid-epoch", "epoch-boundary"])
def test_one_kill(darcy_dir, tmp_path, kill_at):
    _check_resume([*DARCY, f"data.data_dir={darcy_dir}"], tmp_path, kills=[kill_at], n_steps=EPOCHS * STEPS_PER_EPOCH)


@pytest.mark.slow
def test_pde_refiner_noise_is_restored(ks_dir, tmp_path):
    # last.ckpt of step 3, step 4 replayed: its noise must be drawn from the restored global generator
    _check_resume([*PDE_REFINER, f"data.data_dir={ks_dir}"], tmp_path, kills=[4], n_steps=8)


@pytest.mark.slow
def test_collocation_points_are_restored(tmp_path):
    # last.ckpt of step 4 (mid-epoch 2), step 5 replayed: the points of steps 5 and 6 must be drawn again
    _check_resume([*PINN, f"data.data_dir={tmp_path / 'references'}"], tmp_path, kills=[5], n_steps=9)


@pytest.mark.slow
def test_the_same_command_with_ckpt_path_auto_starts_and_resumes_a_run(darcy_dir, tmp_path):
    # the first command finds no last.ckpt and starts afresh (killed before step 10, last.ckpt of step 8);
    # the same command again continues from it and ends as the uninterrupted run
    _check_resume([*DARCY, f"data.data_dir={darcy_dir}"], tmp_path, kills=[10], n_steps=EPOCHS * STEPS_PER_EPOCH, how="auto")


def test_ckpt_path_auto_takes_the_runs_last_checkpoint_when_there_is_one(tmp_path):
    import lightning as L

    from surrogates.cli.train import resume_path

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert resume_path("auto", trainer, tmp_path) is None  # nothing to resume: a fresh run
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resume_path("auto", trainer, tmp_path) == str(last)
    assert resume_path("last", trainer, tmp_path) == str(last)
    assert resume_path(str(tmp_path / "other.ckpt"), trainer, tmp_path) == str(tmp_path / "other.ckpt")
    assert resume_path(None, trainer, tmp_path) is None


def test_resume_last_without_a_checkpoint_is_one_clear_error(darcy_dir, tmp_path):
    cfg = compose_config("train", [*DARCY, f"data.data_dir={darcy_dir}", "ckpt_path=last"], tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: no checkpoint to resume at .*empty/checkpoints/last.ckpt"):
        train(cfg)


def test_resuming_in_the_run_folder_keeps_the_earlier_csv_metrics(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from surrogates.cli.train import keep_earlier_logs

    logger = CSVLogger(tmp_path, name="csv", version="")
    (tmp_path / "csv").mkdir()
    for text in ("first part\n", "second part\n"):
        (tmp_path / "csv" / "metrics.csv").write_text(text)
        keep_earlier_logs(L.Trainer(logger=logger, accelerator="cpu", enable_progress_bar=False))
    assert (tmp_path / "csv" / "metrics.0.csv").read_text() == "first part\n"
    assert (tmp_path / "csv" / "metrics.1.csv").read_text() == "second part\n"
    assert not (tmp_path / "csv" / "metrics.csv").exists()


def test_a_fresh_run_in_a_folder_with_an_earlier_runs_checkpoints_is_refused(darcy_dir, tmp_path):
    # Lightning would overwrite last.ckpt and save the new best as best-v1.ckpt, leaving best.ckpt the earlier
    # run's model beside the new run's metrics.json (a sweep repeated into its own folder did so)
    run_dir = tmp_path / "run"
    first = [*DARCY, f"data.data_dir={darcy_dir}", "trainer.max_epochs=1", "trainer=cpu", "trainer.enable_progress_bar=false"]
    _train_here(first, run_dir)
    checkpoints = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").glob("*.ckpt")}
    metrics = (run_dir / "metrics.json").read_text()
    assert set(checkpoints) == {"best.ckpt", "last.ckpt"}
    with pytest.raises(CheckpointError, match=r"holds checkpoints of an earlier run \(best.ckpt, last.ckpt\).*ckpt_path=auto"):
        train(compose_config("train", [*first, "model.width=12"], run_dir))
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").glob("*.ckpt")} == checkpoints
    assert (run_dir / "metrics.json").read_text() == metrics
    # a run killed between writing best.ckpt and last.ckpt: auto has nothing to continue, and says so
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(CheckpointError, match=r"ckpt_path=auto: there is no last.ckpt to continue, but the folder holds best.ckpt"):
        train(compose_config("train", [*first, "ckpt_path=auto"], run_dir))
    assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == checkpoints["best.ckpt"]
