"""Rollout evaluation of one-step models: correlation and error over time, spread across noise seeds, figures.

Used by ``surrogates-evaluate ckpt=<rollout checkpoint> [compare_ckpt=<another>]`` (:mod:`surrogates.cli.evaluate_rollout`
loads the checkpoints and calls :func:`report_rollouts`) and by ``tools/bench_pde_refiner.py``. Every test trajectory is
rolled out from its state ``start`` for ``steps`` steps and compared with the reference states ``start + 1 .. start + steps``
(a model with a time window of ``n`` input states starts from states ``start .. start + n - 1`` and is compared with
``start + n .. start + n - 1 + steps``):

- per-step Pearson correlation and MSE (:func:`surrogates.metrics.rollout_metrics`), and the
  high-correlation times at 0.8 and 0.9, in the time units of the data's ``dt`` (per trajectory)
  when ``dt`` is a conditioning variable, in steps otherwise;
- for a stochastic model (PDE-Refiner), one rollout per noise seed: metrics are averaged over seeds,
  and the *spread* (standard deviation across seeds of the predicted states, RMS over space and
  trajectories) is reported per step and at the high-correlation time, next to the RMS error; the
  seed-to-seed standard deviation of the mean high-correlation time is reported too;
- the cost: network evaluations per step (``K + 1``) and measured milliseconds per step and trajectory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates import metrics
from surrogates.data.autoregressive import AutoregressiveDataset
from surrogates.data.shards import split_files
from surrogates.evaluation.dataset import data_source
from surrogates.plots.rollouts import plot_correlation, plot_error_spectrum, plot_spacetime

__all__ = [
    "RolloutEvaluation",
    "evaluate_rollouts",
    "reference_spectrum",
    "report_rollouts",
    "rollout_label",
]


@dataclass
class RolloutEvaluation:
    """Rollouts of one model on a set of trajectories, for one or several noise seeds.

    Only per-trajectory curves (``O(N T)`` numbers) grow with the number of trajectories; the predicted states are
    kept for the first trajectory (the space-time figure), and for all only when asked (``keep_predictions``).

    Attributes
    ----------
    name
        Label in tables and figures.
    seeds
        Noise seeds (one entry, unused, for a deterministic model).
    corr, mse
        ``(S, N, T)`` per-step Pearson correlation and MSE.
    high_corr_time
        Threshold -> ``(S, N)`` high-correlation times.
    dt
        ``(N,)`` time between steps (1 when the data has no ``dt``).
    evaluations_per_step
        Network evaluations per step (``K + 1``).
    ms_per_step
        Measured wall milliseconds per step and trajectory (batched rollouts, one seed).
    spread
        ``(N, T)`` standard deviation across seeds of the predicted states, RMS over space (0 for one seed).
    first_trajectory
        ``(T, C, *spatial)`` predicted states of the first trajectory with the first seed.
    first_step_spectrum
        ``(X // 2 + 1,)`` error of the first predicted state per wavenumber (:func:`surrogates.metrics.error_spectrum`,
        over seeds, trajectories and channels), for states of one spatial axis; None otherwise.
    predictions
        ``(S, N, T, C, *spatial)`` predicted states, only with ``keep_predictions=True``; None otherwise.
    """

    name: str
    seeds: list[int]
    corr: np.ndarray
    mse: np.ndarray
    high_corr_time: dict[float, np.ndarray]
    dt: np.ndarray
    evaluations_per_step: int
    ms_per_step: float
    spread: np.ndarray
    first_trajectory: np.ndarray
    first_step_spectrum: np.ndarray | None = None
    predictions: np.ndarray | None = None
    checkpoint: str = ""

    def summary(self) -> dict[str, Any]:
        """Scalars and mean curves (lists) for ``metrics.json``."""
        rmse = np.sqrt(self.mse.mean(axis=0))  # (N, T), RMS over seeds
        spread = self.spread
        out: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "seeds": list(self.seeds),
            "n_trajectories": int(self.corr.shape[1]),
            "steps": int(self.corr.shape[2]),
            "evaluations_per_step": int(self.evaluations_per_step),
            "ms_per_step": float(self.ms_per_step),
            "mse_mean": float(self.mse.mean()),
        }
        for threshold, times in self.high_corr_time.items():
            key = f"high_corr_time_{threshold:g}"
            per_seed = times.mean(axis=1)  # (S,)
            out[key] = float(per_seed.mean())
            out[f"{key}_median"] = float(np.median(times))
            out[f"{key}_seed_std"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
            # error and spread at the step where each trajectory's (seed-mean) correlation time ends
            steps = np.clip(np.round(times.mean(axis=0) / self.dt).astype(int) - 1, 0, self.corr.shape[2] - 1)
            rows = np.arange(len(steps))
            out[f"rmse_at_{key}"] = float(rmse[rows, steps].mean())
            out[f"spread_at_{key}"] = float(spread[rows, steps].mean())
        out["curves"] = {
            "time": (np.arange(1, self.corr.shape[2] + 1) * float(self.dt.mean())).tolist(),
            "corr": np.nanmean(self.corr, axis=(0, 1)).tolist(),
            "rmse": np.sqrt(self.mse.mean(axis=(0, 1))).tolist(),
            "spread": np.sqrt((spread**2).mean(axis=0)).tolist(),
        }
        return out


@torch.no_grad()
def evaluate_rollouts(
    surrogate: Any,
    trajectories: torch.Tensor | AutoregressiveDataset,
    params: torch.Tensor | None,
    steps: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    start: int = 0,
    dt: np.ndarray | float | None = None,
    batch_size: int = 64,
    name: str = "model",
    thresholds: Sequence[float] = metrics.HIGH_CORRELATION_THRESHOLDS,
    keep_predictions: bool = False,
) -> RolloutEvaluation:
    """Roll ``surrogate`` out on reference trajectories and score it.

    Trajectories are rolled out and scored ``batch_size`` at a time, every seed of a batch before the next batch:
    the memory held grows with the number of trajectories only by their curves (``O(N T)`` numbers), not by their
    states, unless ``keep_predictions``.

    Parameters
    ----------
    surrogate
        A :class:`~surrogates.serve.rollout.RolloutSurrogate` (or anything with ``rollout_tensor``,
        ``stochastic`` and ``evaluations_per_step``).
    trajectories
        ``(N, T, C, *spatial)`` reference states in physical units, or an
        :class:`~surrogates.data.autoregressive.AutoregressiveDataset` of trajectories (``pairs=False``), read a
        batch at a time.
    params
        ``(N, P)`` conditioning parameters in physical units (None without conditioning).
    steps
        Steps to roll out (default: to the end of the trajectories).
    seeds
        Noise seeds; a deterministic model is rolled out once.
    start
        Index of the initial state (the first state of the initial window of a model with ``n_steps_input > 1``).
    dt
        Time between states, a number or ``(N,)``; default 1 (times in steps).
    keep_predictions
        Keep every predicted state (``RolloutEvaluation.predictions``, ``S N T C X...`` values).
    """
    if isinstance(trajectories, AutoregressiveDataset):
        n, total, spatial = trajectories.n_trajectories, trajectories.n_steps, trajectories.spatial_shape
    else:
        n, total, spatial = trajectories.shape[0], trajectories.shape[1], tuple(trajectories.shape[3:])
    n_in = int(getattr(surrogate, "n_steps_input", 1))
    first = start + n_in  # the first predicted state
    steps = total - first if steps is None else int(steps)
    if not 0 <= start < total - n_in or not 1 <= steps <= total - first:
        window = f" with a window of {n_in} states" if n_in > 1 else ""
        raise ValueError(f"cannot roll out {steps} steps from state {start}{window} of trajectories with {total} states")
    seeds = [int(s) for s in seeds] if surrogate.stochastic else [int(seeds[0]) if len(seeds) else 0]
    dt = np.broadcast_to(np.asarray(1.0 if dt is None else dt, dtype=np.float64), (n,)).copy()
    seconds = 0.0
    curves: list[list[dict[str, torch.Tensor]]] = []  # per batch, per seed
    spread, kept, first_trajectory = [], [], None
    spectrum_sum, spectrum_rows = None, 0
    for i in range(0, n, batch_size):
        stop = min(i + batch_size, n)
        states = trajectories.trajectories(range(i, stop))[0] if isinstance(trajectories, AutoregressiveDataset) else trajectories[i:stop]
        reference = states[:, first : first + steps].double()
        initial = states[:, start] if n_in == 1 else surrogate.predictor.initial_window(states, start)
        batch_params = None if params is None else params[i:stop]
        predictions = []
        for seed in seeds:
            tic = time.perf_counter()
            # every batch gets its own seed, so results do not depend on the batch size only through the seed
            predictions.append(surrogate.rollout_tensor(initial, steps, batch_params, seed + 7919 * i).cpu())
            seconds += time.perf_counter() - tic
        pred = torch.stack(predictions)  # (S, B, steps, C, *spatial)
        curves.append([metrics.rollout_metrics(p.double(), reference, torch.as_tensor(dt[i:stop]), thresholds) for p in pred])
        if len(seeds) < 2:
            spread.append(np.zeros((stop - i, steps)))
        else:
            var = pred.numpy().std(axis=0, ddof=1) ** 2  # (B, T, C, *spatial)
            spread.append(np.sqrt(var.reshape(var.shape[0], var.shape[1], -1).mean(axis=-1)))
        if len(spatial) == 1:  # (C, X) states: the first step's error per wavenumber, a mean over S B C rows
            first_pred = pred[:, :, 0]
            rows = first_pred.shape[0] * first_pred.shape[1] * first_pred.shape[2]
            part = metrics.error_spectrum(first_pred, reference[:, 0].expand(len(seeds), *reference[:, 0].shape)) * rows
            spectrum_sum, spectrum_rows = part if spectrum_sum is None else spectrum_sum + part, spectrum_rows + rows
        if first_trajectory is None:
            first_trajectory = pred[0, 0].numpy()
        if keep_predictions:
            kept.append(pred.numpy())
    per_seed = lambda key: np.concatenate([torch.stack([c[key] for c in batch]).numpy() for batch in curves], axis=1)  # noqa: E731
    return RolloutEvaluation(
        name=name,
        seeds=seeds,
        corr=per_seed("corr"),
        mse=per_seed("mse"),
        high_corr_time={t: per_seed(f"high_corr_time_{t:g}") for t in thresholds},
        dt=dt,
        evaluations_per_step=int(surrogate.evaluations_per_step),
        ms_per_step=1000.0 * seconds / (len(seeds) * steps * n),
        spread=np.concatenate(spread),
        first_trajectory=first_trajectory,
        first_step_spectrum=None if spectrum_sum is None else (spectrum_sum / spectrum_rows).numpy(),
        predictions=np.concatenate(kept, axis=1) if keep_predictions else None,
        checkpoint=str(getattr(surrogate, "metadata", {}).get("checkpoint", "")),
    )


def reference_spectrum(dataset: AutoregressiveDataset, state: int, batch_size: int = 64) -> np.ndarray:
    """The spectrum (:func:`surrogates.metrics.error_spectrum` against 0) of state ``state`` of every trajectory of
    ``dataset`` (states of one spatial axis), read ``batch_size`` trajectories at a time."""
    total, rows = None, 0
    for i in range(0, dataset.n_trajectories, batch_size):
        states = dataset.trajectories(range(i, min(i + batch_size, dataset.n_trajectories)))[0][:, state].double()
        part = metrics.error_spectrum(states, torch.zeros_like(states)) * (states.shape[0] * states.shape[1])
        total, rows = part if total is None else total + part, rows + states.shape[0] * states.shape[1]
    return (total / rows).numpy()


@torch.no_grad()
def one_step_errors(surrogate: Any, dataset: AutoregressiveDataset, batch_size: int, eval_seed: int = 0) -> dict[str, float]:
    """The training task's test metrics of a one-step model: one prediction from every state of a split.

    Batches are the split's pairs in file order; the refinement noise of batch ``i`` is seeded with
    ``eval_seed + i``, as :class:`~surrogates.tasks.autoregressive.Autoregressive` seeds its test step, so
    with the run's batch size the numbers equal its ``test/rel_l2`` and ``test/mse``.

    Parameters
    ----------
    surrogate
        A :class:`~surrogates.serve.rollout.RolloutSurrogate`.
    dataset
        Pairs ``{"x": (C, *spatial), "y": (C, *spatial), "params": (P,)}`` in physical units (time windows
        ``(n_in C, *spatial)`` -> ``(n_out C, *spatial)`` for a model with a window).

    Returns
    -------
    dict
        ``rel_l2`` (mean over states) and ``mse`` (mean over values), ``n_states``.
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    rel_sum, mse_sum, count = 0.0, 0.0, 0
    for index, batch in enumerate(loader):
        x, y = batch["x"].to(surrogate.device), batch["y"].to(surrogate.device)
        params = batch.get("params")
        params = params.to(surrogate.device) if params is not None and surrogate.conditioning else None
        generator = torch.Generator(device=surrogate.device).manual_seed(eval_seed + index)
        pred = surrogate.predictor.predict(x, params, generator)
        rel_sum += float(metrics.relative_l2(pred, y).double().sum())
        mse_sum += float((pred - y).pow(2).mean().double()) * len(x)  # Lightning weighs batch means by size
        count += len(x)
    return {"rel_l2": rel_sum / count, "mse": mse_sum / count, "n_states": count}


def spacetime_line(states: np.ndarray, spatial_dims: Sequence[str]) -> tuple[np.ndarray, str]:
    """The first channel of states ``(T, C, X, *rest)`` along the first spatial axis, ``(T, X)``, for a space-time image.

    States with more spatial axes (2D fields) are cut through the middle index of every further axis; the second
    value says where, for the figure's title (empty in 1D).
    """
    line = states[:, 0]
    middles = [n // 2 for n in line.shape[2:]]
    cut = ", ".join(f"{name} index {i}" for name, i in zip(spatial_dims[1:], middles))
    return line[(slice(None), slice(None), *middles)], f" cut at {cut}" if cut else ""


def rollout_label(surrogate: Any) -> str:
    """A one-step model's name in tables and figures: ``PDE-Refiner (K=3)`` or ``MSE U-Net``."""
    k = surrogate.refinement_steps
    return f"PDE-Refiner (K={k})" if k else "MSE U-Net"


def report_rollouts(
    surrogates: Sequence[Any],
    data_dir: str | Path | None,
    split: str,
    output_dir: str | Path,
    batch_size: int = 64,
    steps: int | None = None,
    seeds: Sequence[int] | None = None,
    n_trajectories: int | None = None,
    start: int = 0,
) -> dict[str, Any]:
    """Roll one or two one-step models out on the trajectories of ``split`` of ``data_dir`` and write the report:
    ``metrics.json``, ``correlation.png``, ``spacetime.png`` (and ``spectrum.png`` for 1D states) in ``output_dir``.

    Parameters
    ----------
    surrogates
        :class:`~surrogates.serve.rollout.RolloutSurrogate` objects (the first one's schema selects the data's
        state variables and conditioning; the others must take the same). With two, the ratios of the first's
        high-correlation times to the second's are reported too.
    data_dir
        The data folder (``None``: the one the first model's checkpoint records).
    steps, seeds, n_trajectories, start
        As in :func:`evaluate_rollouts` (seeds default ``[0, 1, 2]``); ``n_trajectories``: the first ones of the split
        (rolled out, and scored one step from each of their states).

    Returns the summary written to ``metrics.json``.
    """
    first = surrogates[0]
    for other in surrogates[1:]:
        if other.conditioning != first.conditioning or other.state != first.state or other.n_steps_input != first.n_steps_input:
            raise ValueError("the compared checkpoints take different state variables, conditioning or input windows")
    data_dir = data_source(data_dir, first.schema)
    dataset = AutoregressiveDataset(
        split_files(data_dir, split), first.state,
        first.conditioning, pairs=False, n_trajectories=n_trajectories,
    )
    n_in = first.n_steps_input
    params = dataset.parameters()  # (N, P) numbers; the states are read a batch of trajectories at a time
    dt = params[:, first.conditioning.index("dt")].double().numpy() if "dt" in first.conditioning else None
    time_label = "time" if dt is not None else "steps"
    seeds = list(seeds or [0, 1, 2])
    start = int(start or 0)
    evaluations = []
    names = []
    for surrogate in surrogates:
        name = rollout_label(surrogate)
        name = name if name not in names else f"{name} [{len(names) + 1}]"
        names.append(name)
        evaluations.append(
            evaluate_rollouts(
                surrogate, dataset, params if first.conditioning else None, steps=steps,
                seeds=seeds, start=start, dt=dt, batch_size=batch_size, name=name,
            )
        )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "kind": "rollout",
        "data_dir": str(data_dir),
        "split": split,
        "pde": first.schema.pde,
        "time_units": "dt of each trajectory" if dt is not None else "steps",
        "models": {ev.name: ev.summary() for ev in evaluations},
    }
    pairs = AutoregressiveDataset(  # the one-step errors of the same trajectories as the rollouts
        split_files(data_dir, split), first.state, first.conditioning, pairs=True, n_trajectories=n_trajectories,
        n_steps_input=n_in, n_steps_output=first.n_steps_output,
    )
    try:
        for name, surrogate in zip(names, surrogates):
            summary["models"][name]["one_step"] = one_step_errors(surrogate, pairs, batch_size)
    finally:
        pairs.close()
    if len(evaluations) == 2:
        summary["ratios"] = {
            f"high_corr_time_{t:g}": evaluations[0].summary()[f"high_corr_time_{t:g}"]
            / max(evaluations[1].summary()[f"high_corr_time_{t:g}"], 1e-12)
            for t in metrics.HIGH_CORRELATION_THRESHOLDS
        }
    spectra = None
    if len(dataset.spatial_shape) == 1:  # (N, T, C, X): one periodic spatial axis
        spectra = {ev.name: ev.first_step_spectrum for ev in evaluations}  # the first step's error, over (S, N, C)
        reference = reference_spectrum(dataset, start + n_in, batch_size)  # the reference after one step
        summary["one_step_error_spectrum"] = {name: v.tolist() for name, v in spectra.items()}
        summary["reference_spectrum"] = reference.tolist()
    metrics_path = output_dir / "metrics.json"
    metrics_path.write_text(json.dumps(summary, indent=2))
    pde = first.schema.pde
    if spectra is not None:
        plot_error_spectrum(spectra, output_dir / "spectrum.png",
                            reference=reference, title=f"{pde} {split}: error of the first step per wavenumber")
    plot_correlation(evaluations, output_dir / "correlation.png", time_label=time_label, title=f"{pde} {split}: rollout correlation")
    sample = 0
    reference_line, cut = spacetime_line(dataset.read(sample, n_in + start)[0][: evaluations[0].corr.shape[2]], dataset.spatial_dims)
    plot_spacetime(
        reference_line,
        {ev.name: spacetime_line(ev.first_trajectory, dataset.spatial_dims)[0] for ev in evaluations},
        output_dir / "spacetime.png",
        dt=float(evaluations[0].dt[sample]),
        title=f"{pde} {split} trajectory {sample}{cut} (seed {evaluations[0].seeds[0]})",
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
