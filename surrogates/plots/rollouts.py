"""Rollouts of one-step models: correlation over time, space-time images, error spectra.

The evaluations drawn are :class:`surrogates.evaluation.rollouts.RolloutEvaluation` objects
(``surrogates-evaluate`` on rollout checkpoints, ``tools/bench_pde_refiner.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from surrogates import metrics
from surrogates.plots.base import finite_range, pyplot, save_figure

if TYPE_CHECKING:
    from surrogates.evaluation.rollouts import RolloutEvaluation


def plot_correlation(
    evaluations: Sequence[RolloutEvaluation],
    path: str | Path,
    thresholds: Sequence[float] = metrics.HIGH_CORRELATION_THRESHOLDS,
    time_label: str = "time",
    title: str = "",
) -> Path:
    """Mean correlation vs time of every model in one plot (band: min-max over seeds), threshold lines."""
    plt = pyplot()
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


def _abs_max(values: np.ndarray) -> float:
    """Largest finite absolute value (0 when none is finite): a diverged rollout's NaN or inf must not set a scale."""
    lo, hi = finite_range(values)
    return 0.0 if lo is None else max(-lo, hi)


def plot_spacetime(
    reference: np.ndarray,
    predictions: dict[str, np.ndarray],
    path: str | Path,
    dt: float = 1.0,
    title: str = "",
) -> Path:
    """Space-time images of one trajectory ``(T, X)``: reference | each prediction | each error (one shared error scale)."""
    plt = pyplot()
    panels = [("reference", reference, "RdBu_r")]
    panels += [(name, pred, "RdBu_r") for name, pred in predictions.items()]
    panels += [(f"{name} - reference", pred - reference, "PuOr_r") for name, pred in predictions.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels) + 1, 4.6), squeeze=False)
    vmax = _abs_max(reference)
    # one color scale for all errors, so that the models compare at a glance
    error_max = max([_abs_max(pred - reference) for pred in predictions.values()] + [1e-12])
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
    plt = pyplot()
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
