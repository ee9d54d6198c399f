"""Optuna searches (conf/hparams_search) and the sweep summary: configs, pruning, a 2-trial sweep, resuming."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from surrogates.cli.train import instantiate_collection
from surrogates.cli.sweeps import OFFSET_ENV, OptunaPruning, PrepareStudy, SweepSummary
from tests.cli.conftest import CONF_DIR

try:
    import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
    import optuna
except ImportError:  # the tests that need it skip
    optuna = None
needs_optuna = pytest.mark.skipif(optuna is None, reason="the Optuna sweeper is the `sweep` extra: pip install -e .[sweep]")

REPO = Path(__file__).resolve().parents[2]
SEARCHES = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
EXPERIMENT = {"optuna": "darcy_fno", "darcy_fno": "darcy_fno", "darcy_mgno": "darcy_mgno", "ks_pde_refiner": "ks_pde_refiner"}


def compose_full(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = 0
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(autouse=True)
def _no_offset(monkeypatch):
    monkeypatch.setenv(OFFSET_ENV, "0")  # restored after each test, also when PrepareStudy set it


@needs_optuna
@pytest.mark.parametrize("search", SEARCHES)
def test_every_hparams_search_composes_and_instantiates(tmp_path, search):
    full = compose_full("train", [f"hparams_search={search}", f"experiment={EXPERIMENT[search]}"])
    with open_dict(full):
        full.hydra.runtime.output_dir = str(tmp_path / "run")
    # as in a job: the hydra node keeps its parent (its interpolations resolve), the job's config has none
    HydraConfig.instance().set_config(full)
    hydra_cfg = HydraConfig.get()
    cfg = copy.deepcopy(full)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    assert hydra_cfg.mode.name == "MULTIRUN"
    assert hydra_cfg.sweeper._target_.endswith("OptunaSweeper")
    sweeper = instantiate(hydra_cfg.sweeper)
    assert sweeper.sweeper.storage == f"sqlite:///{hydra_cfg.sweep.dir}/optuna.db"
    assert hydra_cfg.sweep.subdir == "trial_0"
    # the direction agrees with what the checkpoint callback keeps, every searched key exists in the run's config
    mode = cfg.callbacks.model_checkpoint.mode
    assert hydra_cfg.sweeper.direction == {"min": "minimize", "max": "maximize"}[mode]
    assert cfg.callbacks.model_checkpoint.monitor == cfg.optimized_metric
    for key in hydra_cfg.sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, key
    callbacks = instantiate_collection(cfg.callbacks)
    pruning = [c for c in callbacks if isinstance(c, OptunaPruning)]
    assert len(pruning) == 1 and pruning[0].trial_number == 0 and pruning[0].monitor == cfg.optimized_metric
    assert isinstance(pruning[0].pruner, optuna.pruners.BasePruner)
    hydra_callbacks = [instantiate(node) for node in hydra_cfg.callbacks.values()]
    assert {type(c) for c in hydra_callbacks} == {PrepareStudy, SweepSummary}
    # Hydra calls every hook of every callback and turns an AttributeError into a UserWarning per job
    # ("'PrepareStudy' object has no attribute 'on_job_start'"): each one is a hydra Callback
    assert all(isinstance(c, Callback) for c in hydra_callbacks)
    # the experiment's network still builds
    assert instantiate(cfg.model) is not None


@needs_optuna
def test_pruning_callback_reports_to_the_stored_trial_and_stops_the_run(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage)
    for value in (0.1, 0.2):  # two finished trials with good intermediate values
        trial = study.ask()
        trial.report(value, step=0)
        study.tell(trial, value)
    running = study.ask()
    callback = OptunaPruning(storage, "s", running.number, "val/loss",
                             pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    trainer = SimpleNamespace(sanity_checking=False, global_rank=0, current_epoch=0, should_stop=False,
                              callback_metrics={"val/loss": 5.0})
    callback.on_validation_end(trainer, None)
    stored = optuna.load_study(study_name="s", storage=storage).trials[running.number]  # a fresh read
    assert stored.intermediate_values == {0: 5.0}
    assert trainer.should_stop and callback.pruned_at == 0 and stored.user_attrs["pruned_at_epoch"] == 0
    # outside a sweep (no storage) it does nothing
    idle = OptunaPruning(None, None, None, "val/loss")
    trainer.should_stop = False
    idle.on_validation_end(trainer, None)
    assert not trainer.should_stop


@needs_optuna
def test_prepare_study_fails_stale_trials_and_offsets_the_trial_numbers(tmp_path):
    storage = f"sqlite:///{tmp_path}/sweep/optuna.db"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    PrepareStudy(storage, "s").prepare(config)  # a new study: the folder exists, offset 0
    assert (tmp_path / "sweep").is_dir() and os.environ[OFFSET_ENV] == "0"
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), 1.0)
    study.ask()  # left running by a killed sweep
    PrepareStudy(storage, "s").prepare(config)
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert os.environ[OFFSET_ENV] == "2"
    assert OmegaConf.create({"n": "${trial_number:3}"}).n == 5


def test_sweep_summary_ranks_the_runs(tmp_path):
    for name, value in (("0", 0.3), ("1", 0.1), ("2", None), ("3", 0.2)):
        (tmp_path / name).mkdir()
        metrics = {} if value is None else {"val/x": value + 1, "val/x_best": value}
        (tmp_path / name / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    SweepSummary("val/x", "min").on_multirun_end(config)
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert [Path(r["dir"]).name for r in summary["runs"]] == ["1", "3", "0", "2"]
    SweepSummary("val/x", "max").on_multirun_end(config)
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert Path(summary["best"]["dir"]).name == "0" and summary["best"]["val/x"] == 0.3


def test_sweep_summary_lists_the_failed_jobs_and_ends_with_status_1(tmp_path, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"metrics": {"val/x_best": 0.5}}))
    for name in ("1", "2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "error.txt").write_text(f"model (FNO): width must be in [1, inf], got -{name}\n")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    with pytest.raises(SystemExit) as exit_info:
        SweepSummary("val/x", "min").on_multirun_end(config)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"failed: {tmp_path / '1'}: model (FNO): width must be in [1, inf], got -1",
        f"failed: {tmp_path / '2'}: model (FNO): width must be in [1, inf], got -2",
        "surrogates-train: error: 2 of 3 jobs of the sweep failed (each job's error is in its folder's error.txt)",
    ]
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert summary["best"]["val/x"] == 0.5 and [Path(f["dir"]).name for f in summary["failed"]] == ["1", "2"]
    (tmp_path / "0" / "metrics.json").unlink()  # every job failed: no summary to write, the failures still end it
    with pytest.raises(SystemExit):
        SweepSummary("val/x", "min").on_multirun_end(config)
    assert capsys.readouterr().err.splitlines()[-1].startswith("surrogates-train: error: 2 of 2 jobs")


def test_the_summary_table_of_runs_without_varying_overrides_has_one_header_per_column(tmp_path):
    # the header had an empty fourth cell over three columns when no override varied (one run, or one value each)
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"metrics": {"val/x_best": 0.5}}))
    SweepSummary("val/x", "min").on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    table = (tmp_path / "summary.md").read_text().splitlines()[2:5]
    assert table == ["| rank | run | val/x |", "|---|---|---|", "| 1 | 0 | 0.5 |"]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop(OFFSET_ENV, None)
    return subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_a_plain_multirun_names_its_best_run(darcy_dir, tmp_path):
    sweep = tmp_path / "sweep"
    done = _run([
        str(Path(sys.executable).parent / "surrogates-train"), "-m", "experiment=darcy_fno_demo", "model.width=8,12",
        "model.modes=4", "model.n_layers=2", "trainer.max_epochs=2", f"data.data_dir={darcy_dir}",
        f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false",
    ])
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    scores = {str(Path(r.parent)): json.loads(r.read_text())["metrics"]["val/rel_l2_best"] for r in sweep.glob("*/metrics.json")}
    assert len(scores) == 2 and summary["metric"] == "val/rel_l2" and summary["mode"] == "min"
    assert summary["best"]["dir"] == min(scores, key=scores.get)
    assert summary["best"]["val/rel_l2"] == pytest.approx(min(scores.values()))
    assert f"best val/rel_l2 = {summary['best']['val/rel_l2']} in {summary['best']['dir']}" in done.stdout


def test_a_failing_job_is_reported_and_the_sweep_goes_on(darcy_dir, tmp_path):
    # the first job's user error ended the whole sweep (exit 2): the second job never ran, no summary was written
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop(OFFSET_ENV, None)
    done = subprocess.run([
        str(Path(sys.executable).parent / "surrogates-train"), "-m", "experiment=darcy_fno_demo", "model.width=0,8",
        "model.modes=4", "model.n_layers=2", "trainer.max_epochs=1", f"data.data_dir={darcy_dir}",
        f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false",
    ], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr
    error = "model (surrogates.models.fno.FNO): width must be in [1, inf], got 0"
    lines = done.stderr.splitlines()
    assert any(line.startswith("surrogates-train: error: job 0 (experiment=darcy_fno_demo model.width=0 ")
               and f"failed: {error}; the sweep goes on" in line for line in lines), done.stderr
    assert f"failed: {sweep / '0'}: {error}" in lines
    assert lines[-1] == ("surrogates-train: error: 1 of 2 jobs of the sweep failed (each job's error is in its "
                         "folder's error.txt)")
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [Path(r["dir"]).name for r in summary["runs"]] == ["1"] and summary["best"]["dir"] == str(sweep / "1")
    assert [(Path(f["dir"]).name, f["error"]) for f in summary["failed"]] == [("0", error)]
    assert f"- run 0 (" in (sweep / "summary.md").read_text()
    assert f"in {sweep / '1'}" in done.stdout


def _sweep(data_dir: Path, sweep_dir: Path, n_trials: int, *extra: str) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).parent / "surrogates-train"), "hparams_search=darcy_fno", "experiment=darcy_fno_demo",
        f"data.data_dir={data_dir}", "trainer.max_epochs=2", "model.width=choice(8,12)", "model.modes=4",
        "model.n_layers=2", "trainer.enable_progress_bar=false", f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={sweep_dir}", "callbacks.optuna_pruning.pruner.n_startup_trials=1",
        "callbacks.optuna_pruning.pruner.n_warmup_steps=0", "callbacks.model_summary.max_depth=0", *extra,
    ]
    return _run(command)


def _check_two_trial_sweep(sweep: Path) -> None:
    study = optuna.load_study(study_name="darcy_fno", storage=f"sqlite:///{sweep}/optuna.db")
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(p.name for p in sweep.glob("trial_*")) == ["trial_0", "trial_1"]
    for t in trials:  # each job reported its validation epochs to its own trial and returned its best score
        metrics = json.loads((sweep / f"trial_{t.number}" / "metrics.json").read_text())["metrics"]
        assert t.value == pytest.approx(metrics["val/rel_l2_best"])
        assert t.intermediate_values and min(t.intermediate_values.values()) == pytest.approx(t.value)
        overrides = yaml.safe_load((sweep / f"trial_{t.number}" / ".hydra" / "overrides.yaml").read_text())
        assert f"model.width={t.params['model.width']}" in overrides
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert results["best_value"] == pytest.approx(study.best_value) == pytest.approx(summary["best"]["val/rel_l2"])
    assert Path(summary["best"]["dir"]).name == f"trial_{study.best_trial.number}"


@needs_optuna
def test_optuna_sweep_of_two_trials(darcy_dir, tmp_path):
    done = _sweep(darcy_dir, tmp_path / "sweep", 2)
    assert "setup plugin" not in done.stdout + done.stderr  # alembic's lines, one per plugin, at the sweep's start
    _check_two_trial_sweep(tmp_path / "sweep")


@needs_optuna
def test_an_optuna_sweep_whose_every_trial_failed_ends_in_one_line(darcy_dir, tmp_path):
    # Hydra's Optuna sweeper asks for the best trial of a study without a completed one: a traceback
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop(OFFSET_ENV, None)
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run([
        str(Path(sys.executable).parent / "surrogates-train"), "hparams_search=darcy_fno", "experiment=darcy_fno_demo",
        f"data.data_dir={darcy_dir}", "model.width=choice(0)", "model.modes=4", "trainer.max_epochs=1",
        "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}", "trainer.enable_progress_bar=false",
    ], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "surrogates-train: error: the sweep stopped after 1 failed job(s), each reported above and in its folder's error.txt"
    )
    assert (tmp_path / "sweep" / "trial_0" / "error.txt").read_text().startswith("model (surrogates.models.fno.FNO): width")


@needs_optuna
@pytest.mark.slow
def test_killed_optuna_sweep_resumes_from_its_study(darcy_dir, tmp_path):
    sweep = tmp_path / "sweep"
    _sweep(darcy_dir, sweep, 2)
    _check_two_trial_sweep(sweep)
    storage = f"sqlite:///{sweep}/optuna.db"
    optuna.load_study(study_name="darcy_fno", storage=storage).ask()  # a trial a kill left running
    _sweep(darcy_dir, sweep, 1)
    trials = optuna.load_study(study_name="darcy_fno", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert sorted(p.name for p in sweep.glob("trial_*")) == ["trial_0", "trial_1", "trial_3"]
    assert trials[3].intermediate_values  # the resumed job reported to trial 3, not to trial 0


@needs_optuna
@pytest.mark.slow
def test_optuna_trials_in_parallel_through_the_local_launcher(darcy_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e .[slurm]")
    sweep = tmp_path / "sweep"
    _sweep(darcy_dir, sweep, 2, "hydra/launcher=local", "hydra.sweeper.n_jobs=2")
    _check_two_trial_sweep(sweep)  # both trials of the batch, each in its own process, reported to their own trial
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2


@needs_optuna
def test_a_resumed_study_does_not_draw_the_first_sweeps_trials_again(tmp_path):
    # The first sweep's start-up trials are random draws of the seeded sampler; a resumed sweep seeding its
    # sampler alike would propose the same parameters again (repeated, wasted trials).
    storage = f"sqlite:///{tmp_path}/optuna.db"
    space = {"task.optimizer.lr": optuna.distributions.LogUniformDistribution(1e-4, 1e-2)}

    def sampler():
        full = compose_full("train", ["hparams_search=darcy_fno", "experiment=darcy_fno", f"hydra.sweep.dir={tmp_path}"])
        return instantiate(full.hydra.sweeper.sampler)

    study = optuna.create_study(study_name="darcy_fno", storage=storage, sampler=sampler())
    first = []
    for _ in range(2):
        trial = study.ask(space)
        first.append(trial.params["task.optimizer.lr"])
        study.tell(trial, 1.0)
    PrepareStudy(storage, "darcy_fno").prepare(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    resumed = optuna.load_study(study_name="darcy_fno", storage=storage, sampler=sampler())
    again = [resumed.ask(space).params["task.optimizer.lr"] for _ in range(2)]
    assert not set(again) & set(first)


def _search_config(sweep_dir: Path, *overrides: str, **searched: str):
    """The darcy_fno search's config; ``searched``: sweep overrides of the command line (``model__width``: model.width)."""
    cfg = compose_full("train", ["hparams_search=darcy_fno", "experiment=darcy_fno", f"hydra.sweep.dir={sweep_dir}", *overrides])
    with open_dict(cfg):  # compose refuses sweep overrides outside a multirun; a multirun's config holds them so
        cfg.hydra.overrides.task += [f"{key.replace('__', '.')}={value}" for key, value in searched.items()]
    return cfg


@needs_optuna
def test_a_study_is_not_resumed_with_another_search(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    PrepareStudy(storage, "darcy_fno").prepare(_search_config(tmp_path, task__optimizer__lr="tag(log, interval(1e-4, 1e-2))"))
    study = optuna.load_study(study_name="darcy_fno", storage=storage)  # created with its search
    study.tell(study.ask(), 0.5)
    study.ask()  # left running by a killed sweep
    # another interval, another search key, another direction: refused before the study changes
    lr = {"task__optimizer__lr": "tag(log, interval(1e-4, 1e-2))"}
    for changed in (_search_config(tmp_path, task__optimizer__lr="tag(log, interval(1e-3, 1e-1))"),
                    _search_config(tmp_path, model__width="choice(16, 24)", **lr),
                    _search_config(tmp_path, "hydra.sweeper.direction=maximize", "callbacks.model_checkpoint.mode=max", **lr)):
        with pytest.raises(ValueError, match="created for another search"):
            PrepareStudy(storage, "darcy_fno").prepare(changed)
    # the same search resumes (a fixed override may differ, with a warning)
    assert [t.state.name for t in optuna.load_study(study_name="darcy_fno", storage=storage).trials] == ["COMPLETE", "RUNNING"]
    PrepareStudy(storage, "darcy_fno").prepare(_search_config(tmp_path, "trainer.max_epochs=3", **lr))
    assert os.environ[OFFSET_ENV] == "2"


@needs_optuna
def test_a_refused_resume_ends_the_command(tmp_path, capsys):
    # Hydra turns an exception of a callback into a warning and sweeps on, with the jobs numbered from trial 0
    storage = f"sqlite:///{tmp_path}/optuna.db"
    PrepareStudy(storage, "darcy_fno").prepare(_search_config(tmp_path))
    optuna.load_study(study_name="darcy_fno", storage=storage).ask()
    with pytest.raises(SystemExit) as stopped:
        PrepareStudy(storage, "darcy_fno").on_multirun_start(_search_config(tmp_path, model__width="choice(16, 24)"))
    assert stopped.value.code == 2
    assert "surrogates-train: error: study 'darcy_fno' was created for another search (model.width" in capsys.readouterr().err


@needs_optuna
def test_the_search_direction_follows_the_checkpoint_mode(tmp_path):
    # hparams_search=optuna on a maximized metric (the PDE-Refiner's high-correlation time) maximizes it
    full = compose_full("train", ["hparams_search=optuna", "experiment=ks_pde_refiner", f"hydra.sweep.dir={tmp_path}"])
    assert full.callbacks.model_checkpoint.mode == "max" and full.hydra.sweeper.direction == "maximize"
    assert instantiate(full.hydra.sweeper).sweeper._get_directions() == ["maximize"]
    # a direction that disagrees with the mode is refused before the study exists
    storage = f"sqlite:///{tmp_path}/optuna.db"
    with pytest.raises(ValueError, match="would minimize the metric, but the checkpoint callback keeps its maximum"):
        PrepareStudy(storage, "darcy_fno").prepare(_search_config(tmp_path, "callbacks.model_checkpoint.mode=max"))
    with pytest.raises(KeyError):
        optuna.load_study(study_name="darcy_fno", storage=storage)
