"""``surrogates-evaluate`` on rollout checkpoints (PDE-Refiner, MSE U-Net): metrics.json and figures.

Loads the checkpoints (:class:`surrogates.serve.rollout.RolloutSurrogate`) and the test trajectories,
then measures with :func:`surrogates.tasks.rollout_evaluation.evaluate_rollouts`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from surrogates import metrics
from surrogates.data.autoregressive import AutoregressiveDataset
from surrogates.data.shards import split_files
from surrogates.serve.rollout import RolloutSurrogate
from surrogates.tasks.rollout_evaluation import (
    evaluate_rollouts,
    plot_correlation,
    plot_error_spectrum,
    plot_spacetime,
)


def _label(surrogate: Any) -> str:
    k = surrogate.refinement_steps
    return f"PDE-Refiner (K={k})" if k else "MSE U-Net"


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
    first = surrogates_[0]
    for other in surrogates_[1:]:
        if other.conditioning != first.conditioning or other.schema.get("state") != first.schema.get("state"):
            raise ValueError("the compared checkpoints take different state variables or conditioning")
    data_dir = cfg.get("data_dir") or first.schema.get("data_dir")
    if not data_dir:
        raise ValueError("the checkpoint records no data folder; pass data_dir=...")
    dataset = AutoregressiveDataset(
        split_files(data_dir, cfg.split), first.schema.get("state") or first.schema.get("inputs") or ["u"],
        first.conditioning, pairs=False, n_trajectories=options.get("n_trajectories"),
    )
    trajectories, params = dataset.trajectories()
    dt = params[:, first.conditioning.index("dt")].double().numpy() if "dt" in first.conditioning else None
    time_label = "time" if dt is not None else "steps"
    seeds = list(options.get("seeds") or [0, 1, 2])
    evaluations = []
    names = []
    for surrogate in surrogates_:
        name = _label(surrogate)
        name = name if name not in names else f"{name} [{len(names) + 1}]"
        names.append(name)
        evaluations.append(
            evaluate_rollouts(
                surrogate, trajectories, params if first.conditioning else None, steps=options.get("steps"),
                seeds=seeds, start=int(options.get("start") or 0), dt=dt, batch_size=cfg.batch_size, name=name,
            )
        )

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "kind": "rollout",
        "data_dir": str(data_dir),
        "split": cfg.split,
        "pde": first.schema.get("pde"),
        "time_units": "dt of each trajectory" if dt is not None else "steps",
        "models": {ev.name: ev.summary() for ev in evaluations},
    }
    if len(evaluations) == 2:
        summary["ratios"] = {
            f"high_corr_time_{t:g}": evaluations[0].summary()[f"high_corr_time_{t:g}"]
            / max(evaluations[1].summary()[f"high_corr_time_{t:g}"], 1e-12)
            for t in metrics.HIGH_CORRELATION_THRESHOLDS
        }
    start = int(options.get("start") or 0)
    spectra = None
    if trajectories.ndim == 4:  # (N, T, C, X): one periodic spatial axis
        first_states = trajectories[:, start + 1].double()  # (N, C, X), the reference after one step
        spectra = {
            ev.name: metrics.error_spectrum(torch.from_numpy(ev.predictions[:, :, 0]),  # (S, N, C, X), first step
                                            first_states.expand(len(ev.seeds), *first_states.shape))
            for ev in evaluations
        }
        reference = metrics.error_spectrum(first_states, torch.zeros_like(first_states))
        summary["one_step_error_spectrum"] = {name: v.tolist() for name, v in spectra.items()}
        summary["reference_spectrum"] = reference.tolist()
    metrics_path = output_dir / "metrics.json"
    metrics_path.write_text(json.dumps(summary, indent=2))
    pde = first.schema.get("pde") or ""
    if spectra is not None:
        plot_error_spectrum({name: v.numpy() for name, v in spectra.items()}, output_dir / "spectrum.png",
                            reference=reference.numpy(), title=f"{pde} {cfg.split}: error of the first step per wavenumber")
    plot_correlation(evaluations, output_dir / "correlation.png", time_label=time_label, title=f"{pde} {cfg.split}: rollout correlation")
    sample = 0
    plot_spacetime(
        trajectories[sample, 1 + start :][: evaluations[0].corr.shape[2], 0].numpy(),
        {ev.name: ev.predictions[0, sample, :, 0] for ev in evaluations},
        output_dir / "spacetime.png",
        dt=float(evaluations[0].dt[sample]),
        title=f"{pde} {cfg.split} trajectory {sample} (seed {evaluations[0].seeds[0]})",
    )
    for ev in evaluations:
        s = summary["models"][ev.name]
        print(
            f"{ev.name}: high-correlation time {s['high_corr_time_0.8']:.2f} (0.8), {s['high_corr_time_0.9']:.2f} (0.9) "
            f"[{time_label}], rollout MSE {s['mse_mean']:.4g}, {s['evaluations_per_step']} evaluation(s) per step"
        )
    print(f"metrics: {metrics_path}")
    figures = ["correlation.png", "spacetime.png"] + (["spectrum.png"] if spectra is not None else [])
    print("figures: " + ", ".join(str(output_dir / name) for name in figures))
    return summary
