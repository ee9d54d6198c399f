"""Whole trajectories as space-time fields, for models that predict every time at once.

:class:`SpaceTimeDataset` reads a time-dependent dataset (variables ``(sample, time, *spatial)``)
so that a sample's input is the state at ``input_time`` broadcast over the time axis, and its target
is the whole trajectory: ``{"x": (C_in, T, *spatial), "y": (C_out, T, *spatial)}``. The space-time
grid is then the model's grid (``spatial_dims = ("time", *spatial)``), which is what physics-informed
space-time models such as :mod:`surrogates.models.hc_moe` work on. :class:`SpaceTimeDataModule` is
:class:`~surrogates.data.datamodule.FieldDataModule` with this dataset (same splits, normalization
from the training split, data schema).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from surrogates.data.datamodule import FieldDataModule
from surrogates.data.dataset import FieldDataset
from surrogates.data.schema import TIME_DIM, DatasetFileError
from surrogates.data.shards import split_files
from surrogates.schema import DataSchema

__all__ = ["SpaceTimeDataset", "SpaceTimeDataModule"]


class SpaceTimeDataset(FieldDataset):
    """Samples ``{"x": inputs at input_time broadcast over time, "y": target trajectories}``.

    Parameters
    ----------
    files, inputs, targets, check_finite
        As :class:`~surrogates.data.dataset.FieldDataset`. Every target must have a time axis;
        inputs without one (per-sample scalars, stationary fields) are broadcast.
    input_time
        Time index of the inputs (0: the initial state).
    time_stride, n_times
        Keep every ``time_stride``-th stored time, then the first ``n_times`` of those (all by default).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        inputs: Sequence[str],
        targets: Sequence[str],
        input_time: int = 0,
        time_stride: int = 1,
        n_times: int | None = None,
        check_finite: bool = True,
    ):
        super().__init__(files, inputs, targets, input_time=input_time, target_time=0, check_finite=check_finite)
        if time_stride < 1:
            raise ValueError(f"time_stride must be >= 1, got {time_stride}")
        info = self.infos[0]
        for channel in self._target_channels:
            dims = info.variables[channel.name].dims
            if dims[1:2] != (TIME_DIM,):
                raise DatasetFileError(
                    info.path, f"target {channel.name!r} has dims {dims}; trajectories need (sample, time, ...)"
                )
        stored = info.variables[self._target_channels[0].name].shape[1]
        times = np.arange(0, stored, int(time_stride))
        if n_times is not None:
            if not 2 <= n_times <= times.size:
                raise ValueError(f"n_times must be in [2, {times.size}] for this data, got {n_times}")
            times = times[: int(n_times)]
        self.time_index = times
        self.spatial_dims = (TIME_DIM, *self.spatial_dims)
        self.spatial_shape = (int(times.size), *self.spatial_shape)
        if TIME_DIM in self.coords:
            self.coords = {**self.coords, TIME_DIM: np.asarray(self.coords[TIME_DIM])[times]}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index``: ``{"x": (C_in, T, *spatial), "y": (C_out, T, *spatial)}``, float32."""
        k, local = self._locate(int(index))
        shape = self.spatial_shape
        try:
            variables = self._files.variables(k)
            xs = []
            for channel in self._input_channels:
                data = variables[channel.name]
                if channel.scalar:
                    xs.append(np.full(shape, data[local], dtype=np.float32))
                elif channel.time is not None:
                    xs.append(np.broadcast_to(np.asarray(data[local, channel.time], dtype=np.float32), shape))
                else:
                    xs.append(np.broadcast_to(np.asarray(data[local], dtype=np.float32), shape))
            ys = [np.asarray(variables[c.name][local], dtype=np.float32)[self.time_index] for c in self._target_channels]
        except OSError as error:
            raise DatasetFileError(self.files[k], f"cannot read sample {local}: {error}") from error
        return {"x": torch.from_numpy(np.stack(xs)), "y": torch.from_numpy(np.stack(ys))}


class SpaceTimeDataModule(FieldDataModule):
    """:class:`~surrogates.data.datamodule.FieldDataModule` over :class:`SpaceTimeDataset` splits.

    Parameters
    ----------
    data_dir, inputs, targets, batch_size, num_workers, seed, n_train, check_finite, pin_memory
        As :class:`~surrogates.data.datamodule.FieldDataModule`.
    input_time, time_stride, n_times
        As :class:`SpaceTimeDataset`.
    """

    def __init__(
        self,
        data_dir: str | Path,
        inputs: Sequence[str],
        targets: Sequence[str],
        batch_size: int = 8,
        num_workers: int = 0,
        input_time: int = 0,
        time_stride: int = 1,
        n_times: int | None = None,
        seed: int = 0,
        n_train: int | None = None,
        check_finite: bool = True,
        pin_memory: bool = False,
    ):
        super().__init__(
            data_dir, inputs, targets, batch_size=batch_size, num_workers=num_workers, input_time=input_time,
            target_time=None, seed=seed, n_train=n_train, check_finite=check_finite, pin_memory=pin_memory,
        )
        self.time_stride = int(time_stride)
        self.n_times = None if n_times is None else int(n_times)

    def _load(self, split: str) -> SpaceTimeDataset:
        if split not in self.datasets:
            self.datasets[split] = SpaceTimeDataset(
                split_files(self.data_dir, split), self.inputs, self.targets, input_time=self.input_time or 0,
                time_stride=self.time_stride, n_times=self.n_times, check_finite=self.check_finite,
            )
        return self.datasets[split]

    def _reference(self) -> SpaceTimeDataset:
        for split in ("train", "val", "test"):
            if split in self.datasets:
                return self.datasets[split]
        return self._load("train")

    def data_schema(self) -> DataSchema:
        """:meth:`FieldDataModule.data_schema` with ``time_stride`` and ``n_times``; ``spatial_dims`` starts with ``time``."""
        return replace(super().data_schema(), time_stride=self.time_stride, n_times=self.n_times)
