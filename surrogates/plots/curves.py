"""Training curves of a run: the losses and validation metrics Lightning's CSV logger wrote, per step."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from surrogates.plots.base import pyplot, save_figure

__all__ = ["plot_training_curves", "read_logged_metrics"]


def read_logged_metrics(files: Sequence[str | Path]) -> dict[str, list[tuple[int, float]]]:
    """``metric -> [(step, value), ...]`` from CSV logger files (a resumed run's earlier files first).

    Rows repeated by a resumed run (steps logged again after the checkpoint) keep the later value.
    """
    series: dict[str, dict[int, float]] = {}
    for path in files:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    step = int(float(row.get("step") or "nan"))
                except ValueError:
                    continue
                for name, text in row.items():
                    if name in ("step", "epoch") or not text or name.startswith("lr-"):
                        continue
                    try:
                        value = float(text)
                    except ValueError:
                        continue
                    if math.isfinite(value):
                        series.setdefault(name, {})[step] = value
    return {name: sorted(points.items()) for name, points in series.items()}


def plot_training_curves(files: Sequence[str | Path], path: str | Path, title: str = "") -> Path | None:
    """``curves.png``: training loss (left) and validation metrics (right) against the step.

    Log scale on an axis whose values are all positive. Returns None when the files hold no metric
    (e.g. a run without a CSV logger).
    """
    series = read_logged_metrics(files)
    panels = {
        "training": {k: v for k, v in series.items() if k.startswith("train/")},
        "validation": {k: v for k, v in series.items() if k.startswith("val/")},
    }
    panels = {name: curves for name, curves in panels.items() if curves}
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for metric, points in sorted(curves.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=metric)
        if all(value > 0 for points in curves.values() for _, value in points):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
