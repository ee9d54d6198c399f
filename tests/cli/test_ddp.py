"""Training with several processes (`trainer=ddp`): metrics of whole splits, each sample evaluated once,
one metrics.json; and the pieces that make it so, checked in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from surrogates.checkpoint import read_checkpoint
from surrogates.data.datamodule import FieldDataModule
from surrogates.tasks.operator_regression import OperatorRegression
from surrogates.tasks.reduction import SampleMeans

REPO = Path(__file__).resolve().parents[2]
# uneven on purpose: 9 samples on 2 processes in batches of 4 are 5 (2 batches) and 4 (1 batch)
SIZES = {"train": 12, "val": 9, "test": 9}
BATCH = 4


@pytest.fixture(scope="module")
def uneven_darcy(tmp_path_factory) -> Path:
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.darcy import Darcy

    root = tmp_path_factory.mktemp("data") / "darcy_12"
    generate_dataset(Darcy(resolution=12), root, SIZES, seed=0, chunk_size=16, progress=False)
    return root


class _SummingStrategy:
    """Stands for DDP's all-reduce (sum) over the processes whose sums it was given."""

    def __init__(self, means: list[SampleMeans]):
        # taken now: an all-reduce sums what every process holds at once, before any compute() resets its own
        self.parts = [m._sums.clone() if m._sums is not None else None for m in means]

    def reduce(self, tensor, reduce_op="mean"):
        assert reduce_op == "sum"
        return sum(p if p is not None else torch.zeros_like(tensor) for p in self.parts)


def test_sample_means_weigh_processes_by_their_sample_counts():
    values = torch.arange(1.0, 10.0)  # 9 samples: one process 5, the other 4 and a third none
    ranks = [SampleMeans(["e"]) for _ in range(3)]
    ranks[0].update({"e": values[:4]}, 4)
    ranks[0].update({"e": values[8:]}, 1)
    ranks[1].update({"e": values[4:8]}, 4)
    strategy = _SummingStrategy(ranks)
    means = [m.compute(strategy, torch.device("cpu")) for m in list(ranks)]
    # every process gets the mean of the 9 values (5.0), not the mean of the per-process means
    # ((3.8 + 6.5 + 0) / 3); exact: integers summed in float64, 45 / 9 rounds to 5.0 exactly
    assert means == [{"e": 5.0}] * 3
    batch_means = SampleMeans(["loss"])
    batch_means.update({"loss": torch.tensor(2.0)}, 3)  # a batch mean counts batch_size times
    batch_means.update({"loss": torch.tensor(6.0)}, 1)
    assert batch_means.compute(_SummingStrategy([batch_means]), torch.device("cpu")) == {"loss": 3.0}
    with pytest.raises(KeyError, match=r"expected the metrics \['a'\], got \['b'\]"):
        SampleMeans(["a"]).update({"b": torch.ones(1)}, 1)


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_loaders_split_the_samples_between_processes_without_repeats(uneven_darcy, split):
    seen = []
    for rank in range(2):
        datamodule = FieldDataModule(uneven_darcy, batch_size=BATCH, inputs=["a"], targets=["u"])
        datamodule.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        datamodule.setup("test" if split == "test" else "validate")
        loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
        seen.append(list(loader.sampler))
    assert sorted(seen[0] + seen[1]) == list(range(SIZES[split]))  # every sample, once
    assert (len(seen[0]), len(seen[1])) == (5, 4)


def _train_command(data_dir: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [
        str(Path(sys.executable).parent / "surrogates-train"), "experiment=darcy_fno_demo", f"data.data_dir={data_dir}",
        f"data.batch_size={BATCH}", "model.width=4", "model.modes=2", "model.n_layers=1", "model.projection_channels=8",
        "trainer.max_epochs=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *overrides,
    ]


def _one_process(data_dir: Path, stage: str, ckpt: Path) -> dict[str, float]:
    """validate or test of a checkpoint in this process (one device, no sampler of Lightning's)."""
    net = read_checkpoint(ckpt).build_model()  # the architecture the file records; its weights are loaded next
    task = OperatorRegression.load_from_checkpoint(ckpt, weights_only=True, net=net, optimizer=None)
    datamodule = FieldDataModule(data_dir, batch_size=BATCH, inputs=["a"], targets=["u"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    run = trainer.validate if stage == "val" else trainer.test
    return {k: float(v) for k, v in run(task, datamodule=datamodule, verbose=False)[0].items()}


# about 30 s on two busy cores: in the fast suite (the acceptance check of DDP's metrics)
def test_two_processes_report_the_metrics_of_one_on_the_same_checkpoints(uneven_darcy, tmp_path):
    run_dir = tmp_path / "ddp"
    command = _train_command(
        uneven_darcy, run_dir, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
        "callbacks.model_checkpoint.last_every_n_train_steps=0",
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    # only the first process writes metrics.json and prints where it is
    assert done.stdout.count("metrics: ") == 1, done.stdout
    written = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    checkpoints = run_dir / "checkpoints"
    # the last validation is that of the weights in last.ckpt (written after it); the test, of best.ckpt
    val = _one_process(uneven_darcy, "val", checkpoints / "last.ckpt")
    test = _one_process(uneven_darcy, "test", checkpoints / "best.ckpt")
    # Same weights, same samples, each evaluated once: per-sample errors differ only by float32 round-off of
    # their sums over the 12 x 12 grid in batches made up differently (at most ~ n * eps = 144 * 6e-8 ~ 1e-5
    # relative, in practice far less); the means add the per-sample values in float64 in both runs.
    for name in ("rel_l2", "rel_h1"):
        assert written[f"val/{name}"] == pytest.approx(val[f"val/{name}"], rel=1e-5)
        assert written[f"test/{name}"] == pytest.approx(test[f"test/{name}"], rel=1e-5)


def test_training_shares_of_two_processes_cover_the_epoch_order_and_resume_inside_it():
    from surrogates.data.base import DistributedEpochShuffleSampler, EpochShuffleSampler

    order = EpochShuffleSampler(9, seed=3).order(2).tolist()
    shares = [list(DistributedEpochShuffleSampler(9, 3, 2, rank, epoch=2)) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 5  # padded with the order's first index: equal steps
    assert sorted(shares[0] + shares[1]) == sorted(order + order[:1])
    resumed = DistributedEpochShuffleSampler(9, 3, 2, 1, epoch=2, start=2)
    assert list(resumed) == shares[1][2:]  # this process's batches not yet trained
    resumed.set_epoch(3)
    assert list(resumed) == list(DistributedEpochShuffleSampler(9, 3, 2, 1, epoch=3))


@pytest.mark.slow
def test_two_processes_killed_inside_an_epoch_and_resumed_train_what_the_uninterrupted_run_trains(uneven_darcy, tmp_path):
    # 12 training samples on 2 processes in batches of 4: 2 steps an epoch. Both processes SIGKILL themselves
    # before step 4 (tests/faults/callbacks.py), inside the second epoch, after the last.ckpt of step 3; the run
    # resumes from it. `python -m` (cwd: the repository) so that the processes import the test callback.
    ddp = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "test=false",
           "callbacks.model_checkpoint.last_every_n_train_steps=1"]
    kill = ["+callbacks.kill._target_=tests.faults.callbacks.KillAtStep", "+callbacks.kill.step=3"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}

    def run(name: str, *overrides: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "surrogates.cli.train",
                   *_train_command(uneven_darcy, tmp_path / name, *ddp, *overrides)[1:]]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)

    done = run("whole")
    assert done.returncode == 0, done.stderr[-3000:]
    killed = run("interrupted", *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    interrupted = torch.load(tmp_path / "interrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    assert interrupted["global_step"] == 3
    done = run("interrupted", "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    whole, resumed = (torch.load(tmp_path / n / "checkpoints" / "last.ckpt", weights_only=True) for n in ("whole", "interrupted"))
    assert whole["global_step"] == resumed["global_step"] == 4
    # the same batches on every process in the same order: the same weights (CPU, gloo: bit for bit)
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
