"""`surrogates-train`: fit a model on a dataset, test the best checkpoint, return the sweep metric."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, DeviceStatsMonitor, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, open_dict

from surrogates.arguments import check_count
from surrogates.checkpoint import ClassSpec, check_state, loadable_dtype, read_checkpoint
from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors
from surrogates.errors import CheckpointError
from surrogates.plots.curves import plot_training_curves


def instantiate_collection(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` node of a named collection (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(node) for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node]


LOGGER_ONLY_CALLBACKS = (LearningRateMonitor, DeviceStatsMonitor)
"""Callbacks whose only output goes to the loggers (Lightning refuses them in a run without a logger)."""


def without_logger_only_callbacks(callbacks: list[Callback], loggers: list[Logger]) -> list[Callback]:
    """The callbacks a run keeps: all of them, less :data:`LOGGER_ONLY_CALLBACKS` when it has no logger.

    ``logger=none`` with the default callbacks (which monitor the learning rate) would otherwise stop
    at the start of training.
    """
    if loggers:
        return callbacks
    dropped = [type(c).__name__ for c in callbacks if isinstance(c, LOGGER_ONLY_CALLBACKS)]
    if dropped:
        rank_zero_info(f"no logger: left out the callbacks that only write to one ({', '.join(dropped)})")
    return [c for c in callbacks if not isinstance(c, LOGGER_ONLY_CALLBACKS)]


TRAINER_COUNTS = {
    "max_epochs": -1, "min_epochs": 0, "max_steps": -1, "min_steps": 0,
    "accumulate_grad_batches": 1, "check_val_every_n_epoch": 1, "log_every_n_steps": 0,
}
"""Integer arguments of Lightning's ``Trainer`` and their least values (-1: no limit); ``None`` is left to Lightning."""


def check_trainer_counts(trainer_cfg: DictConfig | None) -> None:
    """Raise ``ValueError`` naming ``trainer.<key>`` unless each of :data:`TRAINER_COUNTS` given is an integer in range.

    Lightning takes ``max_epochs=abc`` without a word and fails with a bare ``AssertionError`` in its
    fit loop, after the data were read; checked here, before anything is instantiated.
    """
    for key, low in TRAINER_COUNTS.items():
        value = (trainer_cfg or {}).get(key)
        if value is not None:
            check_count(f"trainer.{key}", value, low)


def check_resumable(path: str | Path, task: L.LightningModule) -> None:
    """Raise :class:`~surrogates.errors.CheckpointError` unless ``path`` is a valid checkpoint of the same model.

    The run's network is built from the configs; a checkpoint of another architecture or size would
    fail deep inside Lightning, so the registered name and constructor arguments are compared first. Then
    what Lightning restores unchecked: the task's ``state_dict`` (every entry's name, shape and dtype,
    finite: NaN weights would resume and train to a NaN loss) and every optimizer's per-parameter state
    (shape and dtype of its parameter, finite: a wrong shape fails inside Adam's first step).
    """
    checkpoint = read_checkpoint(path)
    expected = ClassSpec.from_dict(task.net.init_config(), "model")
    stored = checkpoint.metadata.model
    if (stored.name, stored.kwargs) != (expected.name, expected.kwargs):  # both checked plain data
        differing = sorted(k for k in set(stored.kwargs) | set(expected.kwargs) if stored.kwargs.get(k) != expected.kwargs.get(k))
        # the values, so that the user sees which override to repeat
        changes = ", ".join(f"{k} {stored.kwargs.get(k)!r} -> {expected.kwargs.get(k)!r}" for k in differing[:8])
        raise CheckpointError(
            path, f"holds a {stored.name!r} model that differs from the configured {expected.name!r} "
            f"({changes or 'another model'}; file -> configured); resume with the configs it was trained with"
        )
    check_state(task.state_dict(), checkpoint.state_dict, checkpoint.path)
    check_optimizer_states(checkpoint.contents.get("optimizer_states"), list(task.parameters()), checkpoint.path)


LBFGS_STATE = frozenset({"d", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "al"})
"""Entries of ``torch.optim.LBFGS``'s state: one flat state for all parameters (not shaped like any one)."""


def check_optimizer_states(states: Any, parameters: list[torch.Tensor], path: Any) -> None:
    """Raise :class:`~surrogates.errors.CheckpointError` unless every optimizer state of a checkpoint fits the
    task's parameters.

    ``states`` is the checkpoint's ``optimizer_states`` (Lightning: one ``optimizer.state_dict()`` per
    optimizer); ``parameters`` is ``list(task.parameters())``, what the package's tasks optimize, in that
    order, so the state of parameter index ``i`` belongs to ``parameters[i]``. Tensors with at least one
    dimension must have that parameter's shape and dtype (Adam's moments, SGD's momentum; LBFGS keeps one flat
    state, :data:`LBFGS_STATE`, checked for finiteness only); every floating tensor must be finite.
    """
    if states is None:
        return
    if not isinstance(states, list):
        raise CheckpointError(path, f"'optimizer_states' must be a list, got {type(states).__name__}")
    for i, optimizer in enumerate(states):
        where = f"optimizer_states[{i}]"
        if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)):
            raise CheckpointError(path, f"{where} is not an optimizer's state_dict (no 'state' mapping)")
        _check_parameter_groups(optimizer.get("param_groups"), len(parameters), where, path)
        for index, state in optimizer["state"].items():
            if not (isinstance(index, int) and 0 <= index < len(parameters) and isinstance(state, dict)):
                raise CheckpointError(path, f"{where} holds a state for parameter {index!r}; the task has {len(parameters)}")
            _check_parameter_state(state, parameters[index], f"{where}['state'][{index}]", path)


def _check_parameter_groups(groups: Any, n_parameters: int, where: str, path: Any) -> None:
    """The optimizer's groups must number the task's parameters ``0 .. n - 1``, each once, so that state ``i``
    is parameter ``i``'s (torch would refuse other group sizes only once Lightning restores, mid-set-up)."""
    well_formed = isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
    indices = [index for group in groups for index in group["params"]] if well_formed else []
    if not well_formed or not all(type(i) is int for i in indices) or sorted(indices) != list(range(n_parameters)):
        found = f"{len(indices)} parameter indices" if well_formed else "no list of groups with 'params' lists"
        raise CheckpointError(
            path, f"{where}['param_groups'] does not number the task's {n_parameters} parameters once each ({found}): "
            "the run was trained with another model or optimizer set-up"
        )


def _check_parameter_state(state: dict[str, Any], parameter: torch.Tensor, where: str, path: Any) -> None:
    flat = any(key in LBFGS_STATE for key in state)
    for key, value in state.items():
        tensors = value if isinstance(value, list) else [value]
        for tensor in (t for t in tensors if isinstance(t, torch.Tensor)):
            if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(path, f"{where}[{key!r}] holds NaN or infinite values")
            if flat or tensor.ndim == 0:
                continue
            if tuple(tensor.shape) != tuple(parameter.shape) or not loadable_dtype(tensor.dtype, parameter.dtype):
                raise CheckpointError(
                    path, f"{where}[{key!r}] is {tensor.dtype} {tuple(tensor.shape)} but its parameter is "
                    f"{parameter.dtype} {tuple(parameter.shape)}"
                )


def checkpoint_folder(trainer: L.Trainer, output_dir: str | Path) -> Path:
    """The folder the run's checkpoint callback writes to (``<output dir>/checkpoints`` without one)."""
    callback = trainer.checkpoint_callback
    return Path(callback.dirpath) if callback is not None and callback.dirpath else Path(output_dir) / "checkpoints"


def check_fresh_start(trainer: L.Trainer, output_dir: str | Path, ckpt_path: str | None = None) -> None:
    """Raise :class:`~surrogates.errors.CheckpointError` when a run that starts afresh would write its
    checkpoints into a folder holding an earlier run's.

    Lightning would overwrite ``last.ckpt`` and save the new best as ``best-v1.ckpt``, leaving ``best.ckpt`` the
    earlier run's model beside the new run's ``metrics.json``: a sweep repeated into its own folder, or a killed
    run started again without ``ckpt_path``, would then be read with another run's weights.
    """
    folder = checkpoint_folder(trainer, output_dir)
    found = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    if not found:
        return
    listed = ", ".join(found[:4]) + (" ..." if len(found) > 4 else "")
    if str(ckpt_path) == "auto":  # auto found no last.ckpt to continue, yet the folder holds others
        raise CheckpointError(
            folder, f"ckpt_path=auto: there is no last.ckpt to continue, but the folder holds {listed} (a run killed "
            "while writing its checkpoints, or last.ckpt removed); starting afresh would mix them with the new "
            "run's. Remove them to start afresh, or resume from one with ckpt_path=<file>"
        )
    raise CheckpointError(
        folder, f"holds checkpoints of an earlier run ({listed}); starting afresh would overwrite them. Continue that "
        "run with ckpt_path=auto (or last), or start this one in another folder (hydra.run.dir=..., or a new "
        "hydra.sweep.dir for a sweep)"
    )


def resume_path(ckpt_path: str | None, trainer: L.Trainer, output_dir: str | Path) -> str | None:
    """The checkpoint a run resumes from: none, the given file, or the run's own ``last.ckpt``.

    ``ckpt_path=last`` continues the run whose folder is the output folder (``hydra.run.dir=<run dir>``):
    ``last.ckpt`` in its checkpoint folder; a clear error when there is none (Lightning would start
    from scratch with a warning). ``ckpt_path=auto`` continues from that file when it exists and starts
    afresh when it does not, so that one command both starts a run and resumes it after a kill (a
    scheduler's requeue repeats the command unchanged).
    """
    if not ckpt_path:
        return None
    if str(ckpt_path) not in ("last", "auto"):
        return str(ckpt_path)
    path = checkpoint_folder(trainer, output_dir) / "last.ckpt"
    if path.is_file():
        return str(path)
    if str(ckpt_path) == "auto":
        rank_zero_info(f"ckpt_path=auto: no checkpoint at {path}; starting the run afresh")
        return None
    raise FileNotFoundError(
        f"ckpt_path=last: no checkpoint to resume at {path}; name the run's folder with hydra.run.dir=<run dir>"
    )


def keep_earlier_logs(trainer: L.Trainer) -> list[Path]:
    """Rename the CSV metrics of the run being resumed in its folder; returns the new names.

    Lightning's CSV logger deletes an existing ``metrics.csv`` when it starts; ``metrics.csv`` becomes
    ``metrics.<k>.csv`` (``k = 0, 1, ...`` for successive resumes) and the resumed run writes a new
    ``metrics.csv`` from the checkpoint's step on. Only the first process renames (called before the
    fit, when the trainer does not know its rank yet: Lightning's rank from the environment).
    """
    kept: list[Path] = []
    if rank_zero_only.rank != 0:
        return kept
    for logger in trainer.loggers:
        path = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
        if path is None or not path.is_file():
            continue
        k = 0
        while path.with_name(f"metrics.{k}.csv").exists():
            k += 1
        kept.append(path.rename(path.with_name(f"metrics.{k}.csv")))
    return kept


def expand_field_names(cfg: DictConfig, datamodule: Any) -> None:
    """Write the data's inputs and targets into ``cfg.data`` with vector fields named by their components
    (``data.inputs=[velocity]`` -> ``[velocity_x, velocity_y]``), so that the model's channel counts
    (``${channels:${data.inputs}}``) count components. Nothing changes when no field name was given."""
    expand = getattr(datamodule, "expand_fields", None)
    if expand is None or "inputs" not in cfg.data:
        return
    inputs, targets = expand()
    with open_dict(cfg):
        if list(cfg.data.inputs) != inputs:
            cfg.data.inputs = inputs
        if "targets" in cfg.data and list(cfg.data.targets) != targets:
            cfg.data.targets = targets


def train(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg.model`` with ``cfg.task`` on ``cfg.data``; returns the logged metrics.

    The metrics (and the best checkpoint's path) are also written to ``metrics.json`` in the run
    directory. With several processes (``trainer=ddp``) every process runs this function; the
    validation and test metrics are those of the whole splits in each of them (the tasks reduce them
    across processes), and only the first process writes ``metrics.json`` and prints.
    """
    check_trainer_counts(cfg.get("trainer"))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    expand_field_names(cfg, datamodule)
    net = instantiate(cfg.model)
    task = instantiate(cfg.task, net=net)
    loggers = instantiate_collection(cfg.get("logger"))
    callbacks = without_logger_only_callbacks(instantiate_collection(cfg.get("callbacks")), loggers)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resume = resume_path(cfg.get("ckpt_path"), trainer, cfg.paths.output_dir)
    if resume:
        # Check the file (format, kind, allowlisted model, plain data) before Lightning restores from it.
        check_resumable(resume, task)
    else:
        check_fresh_start(trainer, cfg.paths.output_dir, cfg.get("ckpt_path"))
    if cfg.get("test"):
        # Every split the run will use is checked (schema, NaN) before the first step, not after training.
        datamodule.setup("test")
    if resume:
        keep_earlier_logs(trainer)
    # weights_only: loading a checkpoint runs no pickled code (Lightning's own default may differ by version)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SystemExit:  # Ctrl-C: Lightning shuts the run down, then exits; say where it stands and how to go on
        if trainer.interrupted and trainer.is_global_zero:
            print(interrupted_message(trainer, cfg.paths.output_dir), file=sys.stderr)
            sys.exit(130)
        raise
    results = {name: float(value) for name, value in trainer.callback_metrics.items()}
    callback = trainer.checkpoint_callback
    if callback is not None and callback.monitor and callback.best_model_score is not None:
        # the run's best validation score (what best.ckpt holds), which sweeps compare; not the last epoch's
        results[f"{callback.monitor}_best"] = float(callback.best_model_score)

    best = callback.best_model_path if callback is not None else ""
    if cfg.get("test"):
        # fast_dev_run saves no checkpoint: test the weights in memory then.
        test_metrics = trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        results.update({name: float(value) for name, value in (test_metrics[0] if test_metrics else {}).items()})

    if not trainer.is_global_zero:
        return results
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {"metrics": results, "best_checkpoint": best}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    if best:
        print(f"best checkpoint: {best}")
    elif callback is not None and callback.monitor and not trainer.fast_dev_run:
        # e.g. trainer.max_steps below one epoch's steps: the epoch never ends, so validation never runs
        print(f"no best checkpoint: {callback.monitor} was never logged (no validation ran in "
              f"{trainer.global_step} steps); the test used the last weights. Validate more often "
              "(trainer.val_check_interval=<steps>) or train at least one epoch")
    print(f"metrics: {output_dir / 'metrics.json'}")
    curves = plot_training_curves(logged_metric_files(trainer), output_dir / "curves.png", title=str(cfg.get("task_name", "")))
    if curves is not None:
        print(f"curves:  {curves}")
    return results


def interrupted_message(trainer: L.Trainer, output_dir: str | Path) -> str:
    """The line a run interrupted by Ctrl-C ends with: where its checkpoints are and the command that resumes it."""
    last = checkpoint_folder(trainer, output_dir) / "last.ckpt"
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    except ValueError:  # not under Hydra
        overrides = []
    command = shlex.join(["surrogates-train", *overrides, "ckpt_path=auto", f"hydra.run.dir={output_dir}"])
    where = f"last checkpoint: {last}" if last.is_file() else f"no checkpoint written yet in {last.parent}"
    return f"surrogates-train: interrupted; {where}; resume with: {command}"


def logged_metric_files(trainer: L.Trainer) -> list[Path]:
    """The CSV logger's files of this run, a resumed run's earlier ones (``metrics.<k>.csv``) first."""
    files: list[Path] = []
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            folder = Path(logger.log_dir)
            files += sorted(folder.glob("metrics.*.csv"), key=lambda p: int(p.suffixes[0][1:]) if p.suffixes[0][1:].isdigit() else -1)
            files += [folder / "metrics.csv"] if (folder / "metrics.csv").is_file() else []
    return files


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    # a job of a sweep that fails with a user error is reported, and the sweep goes on (its summary lists it)
    results = report_user_errors("surrogates-train", train, cfg, sweep_goes_on=True)
    if results is None:
        return None
    # Hydra sweepers (Optuna) optimize the value returned here: the best validation score of the run
    # when the checkpoint callback monitors the metric, else its last logged value.
    metric = cfg.get("optimized_metric")
    return results.get(f"{metric}_best", results.get(metric))


if __name__ == "__main__":
    main()
