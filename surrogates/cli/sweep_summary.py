"""`SweepSummary`: at the end of a multirun or sweep, rank its runs by the optimized metric.

Writes ``summary.csv``, ``summary.md`` and ``summary.png`` (the metric against each swept parameter) in
the sweep folder, from each run's ``metrics.json`` and ``.hydra/overrides.yaml``. Registered as a Hydra
callback in ``conf/hydra/default.yaml``; a multirun without metrics (``surrogates-generate -m``) writes nothing.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from surrogates.plots.base import pyplot, save_figure

__all__ = ["SweepSummary", "collect_runs", "write_summary"]


class SweepSummary(Callback):
    """Hydra callback: :func:`write_summary` of the sweep folder when the multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        metric = OmegaConf.select(config, "optimized_metric")
        if not metric:
            return
        mode = OmegaConf.select(config, "callbacks.model_checkpoint.mode", default="min")
        written = write_summary(Path(config.hydra.sweep.dir), str(metric), str(mode))
        if written:
            print(f"sweep summary: {written[1]}")


def collect_runs(sweep_dir: Path, metric: str) -> list[dict[str, Any]]:
    """One record per run folder with a ``metrics.json``: ``run``, ``metric`` (NaN when absent), ``overrides``."""
    runs = []
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text()).get("metrics", {})
        except (OSError, ValueError):
            continue
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        value = metrics.get(metric)
        runs.append({
            "run": path.parent.name,
            "metric": float(value) if isinstance(value, (int, float)) else math.nan,
            "overrides": {k: v for k, _, v in (str(o).partition("=") for o in overrides or [])},
        })
    return runs


def write_summary(sweep_dir: Path, metric: str, mode: str = "min") -> tuple[Path, Path, Path | None] | None:
    """Write ``summary.csv`` / ``summary.md`` (runs best first) and ``summary.png``; None without runs."""
    runs = collect_runs(sweep_dir, metric)
    if not runs:
        return None
    sign = -1.0 if mode == "max" else 1.0
    runs.sort(key=lambda r: (math.isnan(r["metric"]), sign * r["metric"] if not math.isnan(r["metric"]) else 0.0))
    swept = sorted({key for run in runs for key in run["overrides"]})
    varying = [key for key in swept if len({run["overrides"].get(key) for run in runs}) > 1]
    csv_path = sweep_dir / "summary.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "run", metric, *swept])
        for rank, run in enumerate(runs, 1):
            writer.writerow([rank, run["run"], run["metric"], *(run["overrides"].get(k, "") for k in swept)])
    lines = [f"# Sweep summary: {metric} ({mode})", "", f"| rank | run | {metric} | " + " | ".join(varying) + " |",
             "|---" * (3 + len(varying)) + "|"]
    for rank, run in enumerate(runs, 1):
        cells = [str(rank), run["run"], f"{run['metric']:.6g}", *(str(run["overrides"].get(k, "")) for k in varying)]
        lines.append("| " + " | ".join(cells) + " |")
    best = runs[0]
    lines += ["", f"Best: run {best['run']} with " + ", ".join(f"{k}={v}" for k, v in best["overrides"].items())]
    md_path = sweep_dir / "summary.md"
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path, _plot(runs, varying, metric, sweep_dir / "summary.png")


def _plot(runs: list[dict[str, Any]], keys: list[str], metric: str, path: Path) -> Path | None:
    """The metric against each varying parameter (numbers on their axis, other values as categories)."""
    if not keys:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = [run["overrides"].get(key, "") for run in runs]
        try:
            xs = [float(v) for v in values]
        except ValueError:
            categories = sorted(set(values))
            xs = [categories.index(v) for v in values]
            ax.set_xticks(range(len(categories)), categories, rotation=30, fontsize=8)
        ax.scatter(xs, [run["metric"] for run in runs])
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
