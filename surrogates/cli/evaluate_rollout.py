"""``surrogates-evaluate`` on rollout checkpoints (PDE-Refiner, MSE U-Net): metrics.json and figures.

Loads the checkpoints (:class:`surrogates.serve.rollout.RolloutSurrogate`), refuses data of another PDE than
theirs (:func:`surrogates.cli.evaluate.check_same_problem`) and hands them to
:func:`surrogates.evaluation.rollouts.report_rollouts`, which measures and writes the report.
"""

from __future__ import annotations

from typing import Any

from surrogates.cli.evaluate import check_same_problem
from surrogates.evaluation.dataset import data_source
from surrogates.evaluation.rollouts import report_rollouts
from surrogates.serve.rollout import RolloutSurrogate


def evaluate_rollout_checkpoint(cfg: Any, surrogate: RolloutSurrogate | None = None) -> dict[str, Any]:
    """``surrogates-evaluate`` for rollout checkpoints: metrics.json, correlation.png, spacetime.png (and spectrum.png in 1D).

    Reads ``cfg.ckpt``, optional ``cfg.compare_ckpt`` (a second rollout model, e.g. the baseline),
    ``cfg.data_dir`` (default: the checkpoint's), ``cfg.split``, ``cfg.batch_size``, ``cfg.device``,
    ``cfg.paths.output_dir`` and ``cfg.rollout`` (``steps``, ``seeds``, ``n_trajectories``, ``start``).
    ``surrogate``, when given, is ``cfg.ckpt`` already loaded. Returns the summary written to ``metrics.json``.
    """
    options = dict(cfg.get("rollout") or {})
    device = cfg.get("device", "cpu")
    surrogates_ = [surrogate or RolloutSurrogate.load(cfg.ckpt, device=device)]
    if cfg.get("compare_ckpt"):
        surrogates_.append(RolloutSurrogate.load(cfg.compare_ckpt, device=device))
    data_dir = data_source(cfg.get("data_dir"), surrogates_[0].schema)
    for model in surrogates_:  # as for operators: trajectories of another PDE would be scored under this one's name
        check_same_problem(model, model.schema, data_dir, cfg.split)
    return report_rollouts(
        surrogates_, data_dir, cfg.split, cfg.paths.output_dir, batch_size=cfg.batch_size, steps=options.get("steps"),
        seeds=options.get("seeds"), n_trajectories=options.get("n_trajectories"), start=int(options.get("start") or 0),
    )
