"""Sweeps: which run of a multirun won, and Optuna studies that resume and prune.

Three pieces, wired by ``conf/train.yaml`` and ``conf/hparams_search/*.yaml`` (docs/scale_out.md):

- :class:`SweepSummary`, a Hydra callback: at the end of any ``surrogates-train -m`` sweep it reads every
  job's ``metrics.json`` and writes ``sweep_summary.json``, ``summary.csv``, ``summary.md`` and
  ``summary.png`` (the metric against each swept parameter) in the sweep folder (runs ranked by the
  optimized metric, the winner first) and logs the winner.
- :class:`PrepareStudy`, a Hydra callback for Hydra's Optuna sweeper: it creates the sweep folder (the
  SQLite study lives there and the sweeper opens it before any job creates the folder) and a new study with
  its search stored in it, refuses to resume a study with another search, marks the trials a
  killed sweep left ``RUNNING`` as failed, and exports the number of trials already in the study
  (``SURROGATES_OPTUNA_TRIAL_OFFSET``) so that job ``k`` of this sweep knows it is trial ``offset + k``.
- :class:`OptunaPruning`, a Lightning callback: reports the monitored metric of every validation epoch
  to the job's trial in the study storage, and stops the run when the study's pruner says so.

Hydra's Optuna sweeper (1.3.0) hands a job only its parameter overrides, never the trial object, and
records every returned value as a completed trial. A run stopped by the pruner therefore ends as a
*completed* trial with the best value it reached (its trial gets the user attribute ``pruned_at_epoch``);
the sweeper cannot record it as ``PRUNED``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import lightning as L
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from surrogates.cli.errors import JOB_ERROR_FILE
from surrogates.cli.resolvers import OPTUNA_DIRECTIONS

log = logging.getLogger(__name__)

__all__ = [
    "OFFSET_ENV", "OptunaPruning", "PrepareStudy", "SweepSummary", "check_direction", "check_same_search", "collect_failures", "collect_runs", "search_definition",
    "trial_number",
]

OFFSET_ENV = "SURROGATES_OPTUNA_TRIAL_OFFSET"
"""Environment variable holding the number of trials a study held when this sweep started."""


def trial_number(job_num: int | str) -> int:
    """The Optuna trial number of job ``job_num`` of this sweep (``offset + job_num``)."""
    return int(os.environ.get(OFFSET_ENV, "0")) + int(job_num)


# ---------------------------------------------------------------------------------------------- summary


def collect_runs(sweep_dir: str | Path, metric: str) -> list[dict[str, Any]]:
    """Every job folder of a sweep with a ``metrics.json``: folder, overrides and the metric's value.

    The value is the best validation score of the run (``<metric>_best``, what the checkpoint callback kept)
    when recorded, else the last logged ``<metric>``; ``None`` when the run logged neither.
    """
    runs = []
    for path in sorted(Path(sweep_dir).glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text()).get("metrics", {})
        except (OSError, ValueError):
            continue
        value = metrics.get(f"{metric}_best", metrics.get(metric))
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides: list[str] = []
        if overrides_file.is_file():
            import yaml

            overrides = list(yaml.safe_load(overrides_file.read_text()) or [])
        value = float(value) if value is not None and math.isfinite(float(value)) else None
        runs.append({"dir": str(path.parent), "overrides": overrides, metric: value})
    return runs


class SweepSummary(Callback):
    """Hydra callback: ``sweep_summary.json`` in the sweep folder, the runs ranked by ``metric``.

    A subclass of Hydra's ``Callback`` so that the hooks it leaves alone (``on_run_start`` ...) exist: Hydra
    calls every hook on every callback and warns for each one missing, on every single run.

    ``mode`` is ``min`` or ``max`` (the checkpoint callback's). Runs without a finite value come last.
    """

    def __init__(self, metric: str, mode: str = "min") -> None:
        if mode not in {"min", "max"}:
            raise ValueError(f"SweepSummary: mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode = metric, mode

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = collect_runs(sweep_dir, self.metric)
        failed = collect_failures(sweep_dir)
        if runs:
            sign = 1.0 if self.mode == "min" else -1.0
            runs.sort(key=lambda r: (r[self.metric] is None, sign * (r[self.metric] or 0.0)))
            summary = {"metric": self.metric, "mode": self.mode, "best": runs[0], "runs": runs, "failed": failed}
            (sweep_dir / "sweep_summary.json").write_text(json.dumps(summary, indent=2))
            write_tables(sweep_dir, runs, self.metric, self.mode, failed)
            best = runs[0]
            log.info(f"best run of {len(runs)}: {best['dir']} ({self.metric} = {best[self.metric]}) {' '.join(best['overrides'])}")
            print(f"sweep summary: {sweep_dir / 'sweep_summary.json'}; best {self.metric} = {best[self.metric]} in {best['dir']}")
        if failed:
            # after the summary of the jobs that ran: one line per failed job, and a failing exit status
            for job in failed:
                print(f"failed: {job['dir']}: {job['error']}", file=sys.stderr)
            print(f"surrogates-train: error: {len(failed)} of {len(failed) + len(runs)} jobs of the sweep failed "
                  f"(each job's error is in its folder's {JOB_ERROR_FILE})", file=sys.stderr)
            sys.exit(1)


def collect_failures(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every job folder of a sweep whose job failed with a user error (an ``error.txt``): folder, overrides and error."""
    failed = []
    for path in sorted(Path(sweep_dir).glob(f"*/{JOB_ERROR_FILE}")):
        if (path.parent / "metrics.json").is_file():  # finished after all (rerun into the folder)
            continue
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides: list[str] = []
        if overrides_file.is_file():
            import yaml

            overrides = list(yaml.safe_load(overrides_file.read_text()) or [])
        failed.append({"dir": str(path.parent), "overrides": overrides, "error": path.read_text().strip()})
    return failed


def _override_map(run: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, _, v in (str(o).partition("=") for o in run["overrides"])}


def write_tables(
    sweep_dir: Path, runs: list[dict[str, Any]], metric: str, mode: str, failed: list[dict[str, Any]] | None = None,
) -> tuple[Path, Path, Path | None]:
    """``summary.csv`` (every override), ``summary.md`` (the overrides that vary) and ``summary.png`` of ranked runs."""
    overrides = [_override_map(run) for run in runs]
    swept = sorted({key for o in overrides for key in o})
    varying = [key for key in swept if len({o.get(key) for o in overrides}) > 1]
    csv_path = sweep_dir / "summary.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "run", metric, *swept])
        for rank, (run, o) in enumerate(zip(runs, overrides), 1):
            writer.writerow([rank, Path(run["dir"]).name, run[metric], *(o.get(k, "") for k in swept)])
    lines = [f"# Sweep summary: {metric} ({mode}, best validation score of each run)", "",
             "| " + " | ".join(["rank", "run", metric, *varying]) + " |", "|---" * (3 + len(varying)) + "|"]
    for rank, (run, o) in enumerate(zip(runs, overrides), 1):
        value = "-" if run[metric] is None else f"{run[metric]:.6g}"
        lines.append("| " + " | ".join([str(rank), Path(run["dir"]).name, value, *(o.get(k, "") for k in varying)]) + " |")
    lines += ["", f"Best: run {Path(runs[0]['dir']).name} with " + ", ".join(f"{k}={v}" for k, v in overrides[0].items())]
    if failed:
        lines += ["", "Failed:", ""] + [f"- run {Path(job['dir']).name} ({' '.join(job['overrides'])}): {job['error']}" for job in failed]
    md_path = sweep_dir / "summary.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path, _plot(runs, overrides, varying, metric, sweep_dir / "summary.png")


def _plot(runs: list[dict[str, Any]], overrides: list[dict[str, str]], keys: list[str], metric: str, path: Path) -> Path | None:
    """The metric against each varying parameter (numbers on their axis, other values as categories)."""
    if not keys:
        return None
    from surrogates.plots.base import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    values = [math.nan if run[metric] is None else run[metric] for run in runs]
    for ax, key in zip(axes[0], keys):
        labels = [o.get(key, "") for o in overrides]
        try:
            xs = [float(v) for v in labels]
        except ValueError:
            categories = sorted(set(labels))
            xs = [categories.index(v) for v in labels]
            ax.set_xticks(range(len(categories)), categories, rotation=30, fontsize=8)
        ax.scatter(xs, values)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------- Optuna


class PrepareStudy(Callback):
    """Hydra callback for Hydra's Optuna sweeper: sweep folder, stale trials, trial-number offset.

    A sweep rerun with the same ``hydra.sweep.dir`` loads the study stored there: the trials the killed
    sweep left running are marked failed, the sampler sees every finished trial, and the new jobs'
    folders and trial numbers continue after the stored ones. A new study is created here with its search
    (:func:`search_definition`) stored in it; a rerun that asks for another search of the same study is
    refused before anything changes (Optuna would add its trials to the others silently).
    """

    def __init__(self, storage: str | None, study_name: str | None) -> None:
        self.storage, self.study_name = storage, study_name

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and sweeps on: with the offset unknown, the jobs
        # would reuse trial_0... and report to other trials. A failure here ends the command instead.
        try:
            self.prepare(config)
        except Exception as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                traceback.print_exc()
            message = " ".join(str(error).split()) or type(error).__name__
            print(f"surrogates-train: error: {message}", file=sys.stderr)
            sys.exit(2)

    def prepare(self, config: DictConfig) -> None:
        """Create or check the study, fail its stale trials and export the trial-number offset (see the class)."""
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        os.environ[OFFSET_ENV] = "0"
        if not self.storage or not self.study_name:
            return
        import optuna

        search = search_definition(config)
        if search is not None:
            check_direction(search["directions"], OmegaConf.select(config, "callbacks.model_checkpoint.mode"))
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:  # a new study: created with its search, which a resumed sweep must repeat
            if search is not None:
                study = optuna.create_study(study_name=self.study_name, storage=self.storage, directions=search["directions"])
                study.set_user_attr(SEARCH_ATTR, search)
            return
        if search is not None:
            check_same_search(self.study_name, study, search)
        trials = study.get_trials(deepcopy=False)
        stale = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        for t in stale:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if stale:
            log.warning(f"study {self.study_name}: trials {[t.number for t in stale]} of an interrupted sweep marked failed")
        os.environ[OFFSET_ENV] = str(len(trials))
        log.info(f"study {self.study_name}: resuming after {len(trials)} stored trials")


SEARCH_ATTR = "surrogates_search"
"""User attribute of a study holding its :func:`search_definition`."""


def search_definition(config: DictConfig) -> dict[str, Any] | None:
    """What a sweep of Hydra's Optuna sweeper searches: directions, metric, search space, fixed overrides.

    The search space is what the sweeper builds, ``hydra.sweeper.params`` and then the command line's sweep
    overrides (``choice``, ``interval``, ...; the command line wins), each distribution as Optuna's JSON; the
    fixed overrides are the command line's other values. ``None`` for a config without an Optuna sweeper.
    """
    sweeper = OmegaConf.select(config, "hydra.sweeper")
    if sweeper is None or "direction" not in sweeper:
        return None
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import distribution_to_json

    overrides = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    overrides += list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    space, fixed = create_params_from_overrides(overrides)
    direction = OmegaConf.to_container(sweeper.direction) if OmegaConf.is_list(sweeper.direction) else [sweeper.direction]
    return {
        "directions": [str(getattr(d, "name", d)).lower() for d in direction],
        "metric": OmegaConf.select(config, "optimized_metric"),
        "space": {name: distribution_to_json(d) for name, d in sorted(space.items()) if name not in fixed},
        "fixed": {name: str(value) for name, value in sorted(fixed.items())},
    }


def check_direction(directions: list[str], mode: str | None) -> None:
    """Refuse an Optuna direction other than the checkpoint callback's ``mode`` (``min``: ``minimize``).

    Each run returns its best score by that mode (what ``best.ckpt`` holds) and the sweep summary ranks by
    it; a study optimizing the other way would search for the worst runs and prune the best.

    Raises
    ------
    ValueError
        Naming both.
    """
    expected = OPTUNA_DIRECTIONS.get(str(mode))
    if expected is not None and directions != [expected]:
        raise ValueError(
            f"the Optuna search would {'/'.join(directions)} the metric, but the checkpoint callback keeps its "
            f"{mode}imum (callbacks.model_checkpoint.mode={mode}); set hydra.sweeper.direction={expected}, or the mode"
        )


def check_same_search(study_name: str, study: Any, search: dict[str, Any]) -> None:
    """Refuse to resume ``study`` with another direction, metric or search space than it was created with.

    Fixed overrides that differ (a data folder, a number of epochs) are logged as a warning: some (loader
    workers, a progress bar) do not change what a trial measures. Studies created without a stored search
    (by Optuna directly) are not checked.

    Raises
    ------
    ValueError
        Naming the study, what differs and the stored value.
    """
    stored = study.user_attrs.get(SEARCH_ATTR)
    if not isinstance(stored, dict):
        return
    differences = [f"{key}: {stored.get(key)} stored, {search[key]} now" for key in ("directions", "metric")
                   if stored.get(key) != search[key]]
    space, old = search["space"], stored.get("space", {})
    differences += [f"{name}: {old.get(name, 'not searched')} stored, {space.get(name, 'not searched')} now"
                    for name in sorted(set(space) | set(old)) if space.get(name) != old.get(name)]
    if differences:
        raise ValueError(
            f"study {study_name!r} was created for another search ({'; '.join(differences)}); resuming it would mix "
            "trials of different searches. Repeat the stored search, or start a new sweep (another hydra.sweep.dir)"
        )
    fixed, old_fixed = search["fixed"], stored.get("fixed", {})
    changed = sorted(name for name in set(fixed) | set(old_fixed) if fixed.get(name) != old_fixed.get(name))
    if changed:
        log.warning(
            f"study {study_name}: resumed with other fixed overrides than its earlier trials ("
            + ", ".join(f"{n}: {old_fixed.get(n)} -> {fixed.get(n)}" for n in changed)
            + "); the trials are compared as if they measured the same thing"
        )


class OptunaPruning(L.Callback):
    """Report ``monitor`` after every validation epoch to trial ``trial`` of the stored study; stop the run
    when ``pruner`` prunes it.

    ``storage``/``study_name``/``trial`` come from the sweep (``conf/hparams_search``); without a storage or
    study (a run outside an Optuna sweep) the callback does nothing. ``direction`` must be the study's.
    The study's pruner is not stored with it, so the job builds it from ``pruner`` (an Optuna pruner).
    """

    def __init__(
        self,
        storage: str | None,
        study_name: str | None,
        trial: int | None,
        monitor: str,
        pruner: Any = None,
    ) -> None:
        super().__init__()
        self.storage, self.study_name, self.trial_number = storage, study_name, trial
        self.monitor, self.pruner = monitor, pruner
        self._trial: Any = None
        self.pruned_at: int | None = None

    def _connect(self) -> Any:
        if self._trial is not None or not self.storage or not self.study_name or self.trial_number is None:
            return self._trial
        import optuna

        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=self.pruner)
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(self.trial_number))
        except KeyError as error:
            log.warning(f"OptunaPruning: no trial {self.trial_number} in study {self.study_name} ({error}); not pruning")
            self.storage = None
            return None
        self._trial = optuna.trial.Trial(study, trial_id)
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        trial = self._connect()
        value = trainer.callback_metrics.get(self.monitor)
        if trial is None or value is None:
            return
        epoch = trainer.current_epoch
        trial.report(float(value), step=epoch)
        if trial.should_prune():
            self.pruned_at = epoch
            trial.set_user_attr("pruned_at_epoch", epoch)
            log.info(f"trial {self.trial_number} pruned at epoch {epoch} ({self.monitor} = {float(value):.4g})")
            trainer.should_stop = True
