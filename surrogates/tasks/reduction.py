"""Means over the samples of an evaluation epoch that are exact whatever the number of processes.

Lightning's ``self.log(..., sync_dist=True)`` averages each process's mean: the global mean only when
every process saw as many samples. :class:`SampleMeans` keeps sums and a count of samples per process
and adds them across processes once, at the epoch's end (``strategy.reduce``), so a validation or test
split divided unevenly between processes (no sample repeated, see
:meth:`surrogates.data.base.SplitDataModule.val_dataloader`) gives the mean over its samples, as one
process does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

__all__ = ["EvaluationMeans", "SampleMeans"]


class SampleMeans:
    """Running sums of per-sample values of fixed names, and their mean over every process.

    Parameters
    ----------
    names
        The metrics' names. Every process reduces the same names in the same order, also one that saw
        no sample (a split smaller than the number of processes), so they are fixed up front.

    Notes
    -----
    Sums are kept in float64 (float32 on Apple's MPS, which has no float64): the mean of n float32
    values then differs from a float32 running mean by at most about ``n * eps32`` relative.
    """

    def __init__(self, names: Iterable[str]):
        self.names = tuple(names)
        self._sums: torch.Tensor | None = None

    def reset(self) -> None:
        self._sums = None

    def update(self, values: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Add one batch: per-sample values of shape ``(batch_size,)``, or batch means (a 0-d tensor, counted
        ``batch_size`` times)."""
        if set(values) != set(self.names):
            raise KeyError(f"expected the metrics {sorted(self.names)}, got {sorted(values)}")
        first = next(iter(values.values()))
        dtype = torch.float32 if first.device.type == "mps" else torch.float64
        rows = []
        for name in self.names:
            value = values[name].detach().to(dtype)
            rows.append(value.sum() if value.ndim else value * batch_size)
        rows.append(torch.tensor(float(batch_size), dtype=dtype, device=first.device))
        batch = torch.stack(rows)
        self._sums = batch if self._sums is None else self._sums + batch

    def compute(self, strategy, device: torch.device) -> dict[str, torch.Tensor]:
        """The means over every process's samples (float32); empty when no process saw a sample.

        Every process must call this (it adds the sums across processes); ``strategy`` is the trainer's.
        """
        dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
        sums = self._sums if self._sums is not None else torch.zeros(len(self.names) + 1, dtype=dtype, device=device)
        sums = strategy.reduce(sums.to(device), reduce_op="sum")
        self.reset()
        count = sums[-1]
        if count == 0:
            return {}
        return {name: (sums[i] / count).float() for i, name in enumerate(self.names)}


class EvaluationMeans:
    """LightningModule mixin: ``val/<name>`` and ``test/<name>`` as exact means over the split's samples.

    The task sets ``self._means = {"val": SampleMeans(names), "test": SampleMeans(names)}`` and adds each
    batch with ``self._means[stage].update(...)``; this mixin resets them when an evaluation epoch starts
    and logs the means, summed across processes, when it ends. List it before ``L.LightningModule``.
    """

    _means: dict[str, SampleMeans]

    def on_validation_epoch_start(self) -> None:
        self._means["val"].reset()

    def on_test_epoch_start(self) -> None:
        self._means["test"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_means("test")

    def _log_means(self, stage: str) -> None:
        for name, value in self._means[stage].compute(self.trainer.strategy, self.device).items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "rel_l2")
