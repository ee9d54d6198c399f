"""Evaluate any predictor on a dataset split with the platform's metrics.

The predictor is a plain callable on tensors, so neural surrogates and classical solvers are
measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from surrogates import metrics
from surrogates.data.progress import progress_bar


def data_source(data_dir: str | Path | None, schema: Any) -> str:
    """The data to evaluate on: ``data_dir`` when given, else the folder (``data=xarray``: the file) the
    checkpoint's ``schema`` records.

    Raises
    ------
    ValueError
        If neither is there.
    FileNotFoundError
        If the recorded data are not on this machine (a checkpoint trained elsewhere): the message says
        to pass ``data_dir=``, not to generate them.
    """
    if data_dir:
        return str(data_dir)
    if not schema.source:
        raise ValueError("the checkpoint records no data folder; pass data_dir=...")
    files_per_split = bool((schema.reader or {}).get("files"))  # data=xarray with data.train/test: read as recorded
    if not files_per_split and not Path(schema.source).exists():
        raise FileNotFoundError(
            f"the data the checkpoint was trained on, {schema.source}, are not here; pass data_dir=<the folder "
            "of the split's files> (data=xarray: the file)"
        )
    return str(schema.source)


@dataclass
class Evaluation:
    """Per-sample metrics of a predictor on a dataset, and a few samples kept for plotting."""

    per_sample: dict[str, np.ndarray]
    seconds_per_sample: float
    examples: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Mean, median and maximum of each metric, plus the time per sample."""
        out: dict[str, float] = {"n_samples": int(len(next(iter(self.per_sample.values()))))}
        for name, values in self.per_sample.items():
            out[f"{name}_mean"] = float(np.mean(values))
            out[f"{name}_median"] = float(np.median(values))
            out[f"{name}_max"] = float(np.max(values))
        out["seconds_per_sample"] = self.seconds_per_sample
        return out


def evaluate_dataset(
    predict: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int = 32,
    spacing: Sequence[float] | None = None,
    n_examples: int = 3,
    progress: bool = True,
    periodic: Sequence[bool] | None = None,
) -> Evaluation:
    """Run ``predict`` over ``dataset`` and compute every metric of :data:`surrogates.metrics.METRICS`.

    Parameters
    ----------
    predict
        Maps inputs ``(B, C_in, *spatial)`` to predictions ``(B, C_out, *spatial)`` in physical units.
    dataset
        Yields ``{"x": (C_in, *spatial), "y": (C_out, *spatial)}``.
    spacing
        Grid spacing per spatial dim for the H1 metric (unit domain by default).
    periodic
        Whether each spatial dim wraps around, for the H1 metric's differences (none by default).
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    per_sample: dict[str, list[np.ndarray]] = {name: [] for name in metrics.METRICS}
    examples: dict[str, list[np.ndarray]] = {"x": [], "y": [], "pred": []}
    seconds, kept = 0.0, 0
    for batch in progress_bar(iterable=loader, desc="evaluating", unit="batch", disable=not progress):
        start = time.perf_counter()
        pred = predict(batch["x"])
        seconds += time.perf_counter() - start
        target = batch["y"].to(pred.dtype)
        for name in metrics.METRICS:
            per_sample[name].append(metrics.compute_metric(name, pred, target, spacing, periodic).detach().cpu().numpy())
        if kept < n_examples:
            take = min(n_examples - kept, pred.shape[0])
            examples["x"].append(batch["x"][:take].numpy())
            examples["y"].append(target[:take].numpy())
            examples["pred"].append(pred[:take].detach().cpu().numpy())
            kept += take
    if not per_sample["rel_l2"]:
        raise ValueError("the dataset is empty; nothing to evaluate")
    return Evaluation(
        per_sample={name: np.concatenate(values) for name, values in per_sample.items()},
        seconds_per_sample=seconds / len(dataset),
        examples={name: np.concatenate(parts) for name, parts in examples.items() if parts},
    )
