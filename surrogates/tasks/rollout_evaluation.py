"""Rollout evaluation of one-step models: correlation and error over time, spread across noise seeds, figures.

Used by ``surrogates-evaluate ckpt=<rollout checkpoint> [compare_ckpt=<another>]``
(:mod:`surrogates.cli.evaluate_rollout`) and by ``tools/bench_pde_refiner.py``. Every test trajectory is rolled out from its state ``start`` for
``steps`` steps and compared with the reference states ``start + 1 .. start + steps``:

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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates import metrics
from surrogates.plots import _pyplot, save_figure

__all__ = [
    "RolloutEvaluation",
    "evaluate_rollouts",
    "plot_correlation",
    "plot_error_spectrum",
    "plot_spacetime",
]


@dataclass
class RolloutEvaluation:
    """Rollouts of one model on a set of trajectories, for one or several noise seeds.

    Attributes
    ----------
    name
        Label in tables and figures.
    seeds
        Noise seeds (one entry, unused, for a deterministic model).
    predictions
        ``(S, N, T, C, *spatial)`` predicted states (seeds, trajectories, steps).
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
    """

    name: str
    seeds: list[int]
    predictions: np.ndarray
    corr: np.ndarray
    mse: np.ndarray
    high_corr_time: dict[float, np.ndarray]
    dt: np.ndarray
    evaluations_per_step: int
    ms_per_step: float
    checkpoint: str = ""

    @property
    def spread(self) -> np.ndarray:
        """``(N, T)`` standard deviation across seeds of the predicted states, RMS over space (0 for one seed)."""
        if len(self.seeds) < 2:
            return np.zeros(self.corr.shape[1:])
        var = self.predictions.std(axis=0, ddof=1) ** 2  # (N, T, C, *spatial)
        return np.sqrt(var.reshape(var.shape[0], var.shape[1], -1).mean(axis=-1))

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
    trajectories: torch.Tensor,
    params: torch.Tensor | None,
    steps: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    start: int = 0,
    dt: np.ndarray | float | None = None,
    batch_size: int = 64,
    name: str = "model",
    thresholds: Sequence[float] = metrics.HIGH_CORRELATION_THRESHOLDS,
) -> RolloutEvaluation:
    """Roll ``surrogate`` out on reference trajectories and score it.

    Parameters
    ----------
    surrogate
        A :class:`~surrogates.serve.rollout.RolloutSurrogate` (or anything with ``rollout_tensor``,
        ``stochastic`` and ``evaluations_per_step``).
    trajectories
        ``(N, T, C, *spatial)`` reference states in physical units.
    params
        ``(N, P)`` conditioning parameters in physical units (None without conditioning).
    steps
        Steps to roll out (default: to the end of the trajectories).
    seeds
        Noise seeds; a deterministic model is rolled out once.
    start
        Index of the initial state.
    dt
        Time between states, a number or ``(N,)``; default 1 (times in steps).
    """
    n, total = trajectories.shape[:2]
    steps = total - 1 - start if steps is None else int(steps)
    if not 0 <= start < total - 1 or not 1 <= steps <= total - 1 - start:
        raise ValueError(f"cannot roll out {steps} steps from state {start} of trajectories with {total} states")
    seeds = [int(s) for s in seeds] if surrogate.stochastic else [int(seeds[0]) if len(seeds) else 0]
    reference = trajectories[:, start + 1 : start + 1 + steps].double()
    dt = np.broadcast_to(np.asarray(1.0 if dt is None else dt, dtype=np.float64), (n,)).copy()
    predictions, seconds = [], 0.0
    for seed in seeds:
        chunks = []
        for i in range(0, n, batch_size):
            batch_params = None if params is None else params[i : i + batch_size]
            tic = time.perf_counter()
            # every batch gets its own seed, so results do not depend on the batch size only through the seed
            chunks.append(surrogate.rollout_tensor(trajectories[i : i + batch_size, start], steps, batch_params, seed + 7919 * i).cpu())
            seconds += time.perf_counter() - tic
        predictions.append(torch.cat(chunks))
    pred = torch.stack(predictions)  # (S, N, steps, C, *spatial)
    curves = [metrics.rollout_metrics(p.double(), reference, torch.as_tensor(dt), thresholds) for p in pred]
    return RolloutEvaluation(
        name=name,
        seeds=seeds,
        predictions=pred.numpy(),
        corr=torch.stack([c["corr"] for c in curves]).numpy(),
        mse=torch.stack([c["mse"] for c in curves]).numpy(),
        high_corr_time={t: torch.stack([c[f"high_corr_time_{t:g}"] for c in curves]).numpy() for t in thresholds},
        dt=dt,
        evaluations_per_step=int(surrogate.evaluations_per_step),
        ms_per_step=1000.0 * seconds / (len(seeds) * steps * n),
        checkpoint=str(getattr(surrogate, "metadata", {}).get("checkpoint", "")),
    )


# -- figures -------------------------------------------------------------------------------------


def plot_correlation(
    evaluations: Sequence[RolloutEvaluation],
    path: str | Path,
    thresholds: Sequence[float] = metrics.HIGH_CORRELATION_THRESHOLDS,
    time_label: str = "time",
    title: str = "",
) -> Path:
    """Mean correlation vs time of every model in one plot (band: min-max over seeds), threshold lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, ev in enumerate(evaluations):
        time_axis = np.arange(1, ev.corr.shape[2] + 1) * float(ev.dt.mean())
        per_seed = np.nanmean(ev.corr, axis=1)  # (S, T)
        color = f"C{k}"
        hct = ev.summary()
        label = ev.name + "".join(
            f", t({t:g}) = {hct[f'high_corr_time_{t:g}']:.1f}" for t in thresholds
        )
        ax.plot(time_axis, per_seed.mean(axis=0), color=color, lw=1.8, label=label)
        if per_seed.shape[0] > 1:
            ax.fill_between(time_axis, per_seed.min(axis=0), per_seed.max(axis=0), color=color, alpha=0.25, lw=0)
    for t in thresholds:
        ax.axhline(t, color="0.5", ls=":", lw=1)
    ax.set_xlabel(time_label)
    ax.set_ylabel("correlation with the reference")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.legend(fontsize=8, loc="lower left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_spacetime(
    reference: np.ndarray,
    predictions: dict[str, np.ndarray],
    path: str | Path,
    dt: float = 1.0,
    title: str = "",
) -> Path:
    """Space-time images of one trajectory ``(T, X)``: reference | each prediction | each error (one shared error scale)."""
    plt = _pyplot()
    panels = [("reference", reference, "RdBu_r")]
    panels += [(name, pred, "RdBu_r") for name, pred in predictions.items()]
    panels += [(f"{name} - reference", pred - reference, "PuOr_r") for name, pred in predictions.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels) + 1, 4.6), squeeze=False)
    vmax = float(np.abs(reference).max())
    # one color scale for all errors, so that the models compare at a glance
    error_max = max([float(np.abs(pred - reference).max()) for pred in predictions.values()] + [1e-12])
    extent = (0.0, 1.0, dt * 0.5, dt * (reference.shape[0] + 0.5))
    for ax, (name, field, cmap) in zip(axes[0], panels):
        limit = vmax if cmap == "RdBu_r" else error_max
        image = ax.imshow(field, origin="lower", aspect="auto", cmap=cmap, vmin=-limit, vmax=limit, extent=extent)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x / L")
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
    axes[0, 0].set_ylabel("time after the initial state")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_error_spectrum(
    spectra: dict[str, np.ndarray],
    path: str | Path,
    reference: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Error power per wavenumber of several predictions in one log plot (:func:`surrogates.metrics.error_spectrum`).

    Parameters
    ----------
    spectra
        Label -> ``(M,)`` error spectrum (e.g. the one-step error after each refinement step).
    reference
        ``(M,)`` spectrum of the reference states, drawn dashed: where a curve lies above it, the
        prediction's error at that scale exceeds the solution itself.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    floor = 1e-30  # keep exact zeros off the log axis
    if reference is not None:
        ax.semilogy(np.arange(len(reference)), np.maximum(reference, floor), "k--", lw=1.2, label="reference states")
    for k, (name, spectrum) in enumerate(spectra.items()):
        ax.semilogy(np.arange(len(spectrum)), np.maximum(spectrum, floor), color=f"C{k}", lw=1.5, label=name)
    ax.set_xlabel("wavenumber (modes per domain)")
    ax.set_ylabel("power")
    ax.legend(fontsize=8, loc="lower left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
