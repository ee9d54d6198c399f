"""Every experiment of ``conf/experiment/``, end to end: train -> best.ckpt -> test from it -> reload it.

Each config is composed as ``surrogates-train experiment=<name>`` would compose it, with overrides
that only shrink its run (steps, batches, collocation points, reference solutions) so that it runs in
about a second on tiny fixture data, yet long enough for a validation pass, so that the checkpoint callback
writes ``best.ckpt`` and the test step loads it the way a real run does (``weights_only=True``).
Then the file itself is checked: it loads with ``torch.load(weights_only=True)``, passes
:func:`surrogates.checkpoint.read_checkpoint` with the kind its task writes, holds plain-data
hyper-parameters, and rebuilds its network with the saved weights.

``trainer.fast_dev_run=true`` writes no checkpoint and would miss all of this (it did: a
physics-informed run crashed in the test step on omegaconf hyper-parameters).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from surrogates.checkpoint import STATE_PREFIX, check_plain, read_checkpoint
from surrogates.cli.train import train
from tests.cli.conftest import CONF_DIR, DOCS, documented_commands

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
REPO = CONF_DIR.parent

# The kind of file each task writes (the readers dispatch on it).
KIND_BY_TASK = {
    "surrogates.tasks.operator_regression.OperatorRegression": "operator",
    "surrogates.tasks.hard_constraint.HardConstraintTask": "operator",
    "surrogates.tasks.autoregressive.Autoregressive": "rollout",
    "surrogates.tasks.physics_informed.PhysicsInformed": "pointwise",
}

RUN = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "+trainer.num_sanity_val_steps=0"]
# Epoch-based experiments: one short epoch, validated at its end (check_val_every_n_epoch=1).
EPOCH = [
    "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]
# Physics-informed experiments count steps (max_epochs=-1): an "epoch" is data.steps_per_epoch steps,
# validated at its end; 2 steps of few points.
STEPS = ["trainer.max_steps=2", "data.steps_per_epoch=2", "data.n_collocation=64", "data.n_boundary=16"]
# The figure after testing takes seconds (matplotlib); drawn for one experiment (tests/tasks covers the others' kinds).
FIGURE = "helmholtz_pig"

# Physics-informed problems (by family): a coarser reference solve and a small evaluation grid.
# Models keep their configured sizes everywhere: on this data a step takes milliseconds, and the
# checkpoint then holds the architecture users train.
REFERENCE = {
    "allen_cahn": ["data.problem.reference_modes=64", "data.problem.reference_dt=0.01", "data.eval_resolution=[6,11]"],
    "poisson": ["data.problem.reference_resolution=33", "data.eval_resolution=11"],
    "helmholtz": ["data.eval_resolution=11"],
    "klein_gordon": ["data.eval_resolution=11"],
}


def _overrides(experiment: str, data_dir: Path) -> list[str]:
    family = experiment.rpartition("_")[0]
    overrides = [f"experiment={experiment}", f"data.data_dir={data_dir}", *RUN]
    if family in REFERENCE:
        return overrides + STEPS + REFERENCE[family] + [f"task.save_figure={experiment == FIGURE}"]
    return overrides + EPOCH


@pytest.fixture
def data_dir(experiment: str, request, tmp_path: Path) -> Path:
    """The experiment's tiny dataset (made in the set-up phase, so --durations shows the run alone)."""
    if experiment.rpartition("_")[0] in REFERENCE:
        return tmp_path / "references"  # physics-informed: no dataset, the reference solution's cache
    for prefix in ("darcy", "burgers", "ks", "diffusion_sorption", "navier_stokes"):
        if experiment.startswith(prefix + "_"):
            return request.getfixturevalue(f"{prefix}_dir")  # fixtures are made only when needed
    pytest.fail(f"no tiny dataset for {experiment!r}: add a fixture (tests/conftest.py) and its prefix here")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine their spinning costs 10-100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Every experiment, and documented variants that put something else in the file.
CASES = [pytest.param(name, [], id=name) for name in EXPERIMENTS] + [
    # docs/models.md: the last steps with L-BFGS (a second optimizer and its state in the checkpoint)
    pytest.param("helmholtz_pinn", ["task.lbfgs_steps=1"], id="helmholtz_pinn-lbfgs"),
]


@pytest.mark.parametrize(("experiment", "variant"), CASES)
def test_experiment_trains_tests_from_best_checkpoint_and_reloads(compose_cfg, experiment, variant, data_dir):
    cfg = compose_cfg("train", _overrides(experiment, data_dir) + variant)
    if "rollout_trajectories" in cfg.task:  # rollouts scored at every validation: one is enough here
        cfg.task.rollout_trajectories = 1
    results = train(cfg)

    # tested from best.ckpt, with finite metrics
    output_dir = Path(cfg.paths.output_dir)
    summary = json.loads((output_dir / "metrics.json").read_text())
    best = Path(summary["best_checkpoint"])
    assert best == output_dir / "checkpoints" / "best.ckpt" and best.is_file(), summary["best_checkpoint"]
    test_metrics = {k: v for k, v in summary["metrics"].items() if k.startswith("test/")}
    assert "test/rel_l2" in test_metrics
    assert all(math.isfinite(v) for v in test_metrics.values()), test_metrics
    assert results["test/rel_l2"] == test_metrics["test/rel_l2"]
    if experiment == FIGURE:
        assert (output_dir / "physics_informed.png").is_file()

    # (a) tensors and plain data only; (b) valid metadata of the task's kind; (c) plain hyper-parameters
    contents = torch.load(best, map_location="cpu", weights_only=True)
    assert len(contents["optimizer_states"]) == 1 + ("task.lbfgs_steps=1" in variant)
    checkpoint = read_checkpoint(best)
    assert checkpoint.kind == KIND_BY_TASK[cfg.task._target_]
    check_plain(contents["hyper_parameters"])
    # the last checkpoint (what ckpt_path= resumes from) as well
    assert read_checkpoint(best.with_name("last.ckpt")).kind == checkpoint.kind

    # (d) the network rebuilt from the file alone carries the saved weights
    model = checkpoint.build_model()
    # the weights a file predicts with: the network's, or a weight average the task saved beside it
    saved = checkpoint.network_state(getattr(checkpoint, "inference_prefix", STATE_PREFIX))
    rebuilt = model.state_dict()
    assert saved and rebuilt.keys() == saved.keys()
    for name, value in rebuilt.items():
        assert torch.equal(value, saved[name]), name
    # ... built from the configured arguments
    configured = OmegaConf.to_container(cfg.model, resolve=True)
    configured.pop("_target_")
    stored = checkpoint.metadata.model.kwargs
    assert {name: stored.get(name) for name in configured} == configured


def test_fast_dev_run_tests_the_weights_in_memory(compose_cfg, darcy_dir):
    """``trainer.fast_dev_run=true`` writes no checkpoint: the test step then uses the trained weights."""
    cfg = compose_cfg(
        "train",
        ["experiment=darcy_fno_demo", f"data.data_dir={darcy_dir}", "trainer.fast_dev_run=true", *RUN],
    )
    results = train(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert summary["best_checkpoint"] == ""
    assert math.isfinite(results["test/rel_l2"])


def test_documented_experiments_exist():
    named = {
        name for path in [*DOCS, REPO / "Makefile"]
        for name in re.findall(r"experiment=([A-Za-z0-9_]+)", path.read_text())
    }
    assert named and named <= set(EXPERIMENTS), sorted(named - set(EXPERIMENTS))


def test_documented_train_commands_compose(compose_cfg):
    """Each training command of the README and docs/ composes (a sweep as its first point)."""
    commands = [(where, args) for where, _, args in documented_commands(["train"])]
    assert any(line.startswith("README.md") for line, _ in commands)
    for line, args in commands:
        overrides = [arg.split(",")[0] if "-m" in args else arg for arg in args if arg != "-m"]
        # an Optuna search space (choice(...), interval(...)) is the sweeper's, not a value: compose without it
        overrides = [arg for arg in overrides if not re.search(r"=\s*(choice|interval|range|tag)\(", arg)]
        experiment = next((arg.partition("=")[2] for arg in overrides if arg.startswith("experiment=")), None)
        # a command names an experiment, or the data it trains on (data=xarray, data.data_dir=...)
        assert experiment in EXPERIMENTS or any(arg.startswith("data") for arg in overrides), line
        cfg = compose_cfg("train", overrides)
        assert cfg.model._target_ and cfg.task._target_ and cfg.data._target_, line
