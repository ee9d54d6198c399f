"""`FieldDataset`: samples of one split as (input channels, target channels) tensors, read lazily with h5py."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from surrogates.data.fields import expand_field_names
from surrogates.data.foreign import ForeignFileInfo, ForeignLayout, inspect_foreign
from surrogates.data.schema import TIME_DIM, DatasetFileError, FileInfo, inspect_file, require_variables
from surrogates.data.shards import check_same_coordinates
from surrogates.data.worker_files import WorkerFiles
from surrogates.schema import window_channel


@dataclass(frozen=True)
class _Channel:
    """How one variable becomes one channel: optional time index, or broadcast of a per-sample scalar.

    ``source`` is the stored variable and ``component`` the index along its trailing component dim
    (foreign files' vector and tensor fields, see :mod:`surrogates.data.foreign`)."""

    name: str
    time: int | None
    scalar: bool
    source: str = ""
    component: int | None = None
    variable: str = ""
    """The variable read (its name in the file's offered variables; the channel's name without a window step)."""


def _window(
    n_steps_input: int | None, n_steps_output: int | None, input_time: int | None, target_time: int | None
) -> tuple[int, int] | None:
    """``(n_in, n_out)`` of time windows, or None; checked."""
    if n_steps_input is None and n_steps_output is None:
        return None
    if input_time is not None or target_time is not None:
        raise ValueError("give input_time / target_time or n_steps_input / n_steps_output, not both")
    n_in, n_out = int(n_steps_input or 1), int(n_steps_output or 1)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"n_steps_input and n_steps_output must be positive, got {n_steps_input}, {n_steps_output}")
    return n_in, n_out


class FieldDataset(Dataset):
    """Samples of the files of one split, as channel-stacked float32 tensors.

    Every file is validated up front (:func:`~surrogates.data.schema.inspect_file`), so a bad file
    is reported when the dataset is built, not in the middle of an epoch. Files are opened lazily
    in :meth:`__getitem__`, one h5py handle per file and process: a handle opened before a
    DataLoader forks its workers is never reused in a worker, and handles are not pickled.

    Parameters
    ----------
    files
        The split's files, e.g. from :func:`~surrogates.data.shards.split_files`; samples are
        numbered file after file.
    inputs, targets
        Variable names, one channel each, in this order; a vector field's name stands for its components
        (``velocity`` -> ``velocity_x, velocity_y``, :mod:`surrogates.data.fields`).
    input_time, target_time
        Index into the ``time`` dim (negative counts from the end) of input / target variables
        stored as ``(sample, time, ...)``; required when such a variable is named, ignored for
        variables without a time dim.
    check_finite
        Scan every file for NaN/inf when the dataset is built.
    layout
        Read files not written by the package (:func:`~surrogates.data.foreign.inspect_foreign`): the
        names of their sample, time and component dims. ``None``: files in the package's format.
    indices
        Use only these samples (numbered over all files), in this order: a split of one file.
    n_steps_input, n_steps_output
        Time windows instead of ``input_time`` / ``target_time``: every run of ``n_steps_input +
        n_steps_output`` consecutive stored times of a sample is an item, the first ``n_steps_input``
        states of the inputs as channels ``<name>_t0, <name>_t1, ...``, the next ``n_steps_output`` states
        of the targets as channels ``<name>_t<n_steps_input>, ...``. Every variable needs a time dim.

    Attributes
    ----------
    spatial_dims : tuple of str
        Dims of the channels, e.g. ``("x", "y")`` (``()`` when all variables are scalars).
    spatial_shape : tuple of int
        Their sizes.
    coords : dict of str to np.ndarray
        Coordinate values of the first file (``x``, ``y``, ``time``, ...).
    attrs : dict
        File attributes of the first file.
    infos : list of FileInfo
        Metadata of every file.

    Examples
    --------
    >>> ds = FieldDataset(split_files("datasets/darcy_64", "train"), ["a"], ["u"])  # doctest: +SKIP
    >>> ds[0]["x"].shape, ds[0]["y"].shape  # doctest: +SKIP
    (torch.Size([1, 64, 64]), torch.Size([1, 64, 64]))
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        inputs: Sequence[str],
        targets: Sequence[str],
        input_time: int | None = None,
        target_time: int | None = None,
        check_finite: bool = True,
        layout: ForeignLayout | None = None,
        indices: Sequence[int] | None = None,
        n_steps_input: int | None = None,
        n_steps_output: int | None = None,
    ):
        self.files = [Path(f) for f in files]
        self.layout = layout
        self.window = _window(n_steps_input, n_steps_output, input_time, target_time)
        if not self.files:
            raise ValueError("FieldDataset needs at least one file")
        self.inputs = [str(name) for name in inputs]
        self.targets = [str(name) for name in targets]
        if not self.inputs or not self.targets:
            raise ValueError(f"need at least one input and one target variable, got {self.inputs} -> {self.targets}")
        self.input_time = None if input_time is None else int(input_time)
        self.target_time = None if target_time is None else int(target_time)

        self.infos: list[FileInfo] = [
            inspect_file(path, check_finite) if layout is None else inspect_foreign(path, layout, check_finite) for path in self.files
        ]
        # a vector field's name stands for its components (velocity -> velocity_x, velocity_y)
        self.inputs = expand_field_names(self.inputs, self.infos[0].variables)
        self.targets = expand_field_names(self.targets, self.infos[0].variables)
        for info in self.infos:
            require_variables(info, [*self.inputs, *self.targets])
            if isinstance(info, ForeignFileInfo):  # packed, complex, string or ambiguous variables: refused when named
                info.require_usable([*self.inputs, *self.targets])
        first = self.infos[0]
        self._check_consistent()
        self.variable_dims = {name: first.variables[name].dims[1:] for name in {*self.inputs, *self.targets}}
        if self.window is None:
            self._input_channels = [self._channel(first, name, self.input_time, "input_time") for name in self.inputs]
            self._target_channels = [self._channel(first, name, self.target_time, "target_time") for name in self.targets]
        else:
            self._input_channels, self._target_channels, self._n_starts = self._window_channels(first)
        self.spatial_dims, self.spatial_shape = self._spatial_layout(first)
        self.attrs = dict(first.attrs)
        self.coords = self._read_coords(first)
        self._offsets = np.cumsum([0] + [info.n_samples for info in self.infos])
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and self.indices.size and not (
            0 <= self.indices.min() and self.indices.max() < self._offsets[-1]
        ):
            raise IndexError(f"sample indices must lie in [0, {int(self._offsets[-1])})")
        self._files = WorkerFiles(self.files, [channel.source for channel in [*self._input_channels, *self._target_channels]])

    # -- layout -----------------------------------------------------------------------------------
    def _check_consistent(self) -> None:
        first = self.infos[0]
        names = {*self.inputs, *self.targets}
        for info in self.infos[1:]:
            for name in names:
                a, b = first.variables[name], info.variables[name]
                if a.dims[1:] != b.dims[1:] or a.shape[1:] != b.shape[1:]:
                    raise DatasetFileError(
                        info.path,
                        f"variable {name!r} has dims {b.dims} shape {b.shape}, but {first.path.name} has "
                        f"dims {a.dims} shape {a.shape}; all files of a split must have the same layout",
                    )
        if len(self.infos) > 1:  # samples are read on the first file's grid: every file must have it
            dims = {dim for name in names for dim in first.variables[name].dims[1:]}
            reference = self._read_coords(first, dims)
            for info in self.infos[1:]:
                check_same_coordinates(first.path, reference, info.path, self._read_coords(info, dims))

    def _channel(self, info: FileInfo, name: str, time: int | None, option: str) -> _Channel:
        var = info.variables[name]
        dims, shape = var.dims[1:], var.shape[1:]
        if TIME_DIM in dims[1:]:
            raise DatasetFileError(
                info.path, f"variable {name!r} has dims {var.dims}; 'time' must directly follow 'sample'"
            )
        if dims and dims[0] == TIME_DIM:
            steps = shape[0]
            if time is None:
                raise ValueError(
                    f"variable {name!r} in {info.path} has a time dim of length {steps} (dims {var.dims}); "
                    f"pass {option}=<index> (e.g. 0 for the first, -1 for the last snapshot)"
                )
            if not -steps <= time < steps:
                raise ValueError(f"{option}={time} is out of range for variable {name!r} with {steps} time steps")
            return _Channel(name, time % steps, False, *self._source(info, name))
        return _Channel(name, None, not dims, *self._source(info, name))

    def _window_channels(self, info: FileInfo) -> tuple[list[_Channel], list[_Channel], int]:
        """Channels of time windows (the time index of each is an offset from the window's start) and the
        number of windows per sample."""
        n_in, n_out = self.window
        lengths = {}
        for name in {*self.inputs, *self.targets}:
            var = info.variables[name]
            if var.dims[1:2] != (TIME_DIM,):
                raise DatasetFileError(
                    info.path, f"variable {name!r} has dims {var.dims}; time windows (n_steps_input, n_steps_output) "
                    "need every input and target with a time dim right after 'sample'"
                )
            lengths[name] = var.shape[1]
        if len(set(lengths.values())) > 1:
            raise DatasetFileError(info.path, f"time windows need variables with the same number of times, got {lengths}")
        steps = next(iter(lengths.values()))
        n_starts = steps - n_in - n_out + 1
        if n_starts < 1:
            raise ValueError(f"n_steps_input={n_in} + n_steps_output={n_out} exceeds the {steps} stored times in {info.path}")
        inputs = [
            _Channel(window_channel(name, k), k, False, *self._source(info, name), name) for name in self.inputs for k in range(n_in)
        ]
        targets = [
            _Channel(window_channel(name, n_in + k), n_in + k, False, *self._source(info, name), name)
            for name in self.targets for k in range(n_out)
        ]
        return inputs, targets, n_starts

    @property
    def input_names(self) -> list[str]:
        """The input channels' names: the ``inputs``, or with time windows ``u_t0, u_t1, ...``."""
        return [channel.name for channel in self._input_channels]

    @property
    def target_names(self) -> list[str]:
        """The target channels' names: the ``targets``, or with time windows ``u_t2, ...``."""
        return [channel.name for channel in self._target_channels]

    @staticmethod
    def _source(info: FileInfo, name: str) -> tuple[str, int | None]:
        """The stored variable behind ``name`` and its component index (foreign vector fields)."""
        return getattr(info, "sources", {}).get(name, (name, None))

    def _spatial_layout(self, info: FileInfo) -> tuple[tuple[str, ...], tuple[int, ...]]:
        layouts = {}
        for channel in [*self._input_channels, *self._target_channels]:
            if channel.scalar:
                continue
            var = info.variables[channel.variable or channel.name]
            skip = 2 if channel.time is not None else 1
            layouts[channel.name] = (var.dims[skip:], var.shape[skip:])
        distinct = set(layouts.values())
        if len(distinct) > 1:
            listed = ", ".join(f"{name} {dims} {shape}" for name, (dims, shape) in layouts.items())
            raise DatasetFileError(
                info.path, f"input and target fields must share their spatial dims and shape: {listed}"
            )
        return distinct.pop() if distinct else ((), ())

    def _read_coords(self, info: FileInfo, names: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """The file's coordinate values (only those of ``names`` when given)."""
        stored = getattr(info, "coord_sources", {})
        wanted = [name for name in info.coords if names is None or name in names]
        with h5py.File(info.path, "r") as f:
            return {name: np.asarray(f[stored.get(name, name)][...]) for name in wanted}

    @property
    def in_channels(self) -> int:
        return len(self._input_channels)

    @property
    def out_channels(self) -> int:
        return len(self._target_channels)

    # -- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_samples * self.items_per_sample

    @property
    def n_samples(self) -> int:
        """Samples (trajectories with time windows) of the split; items are ``n_samples * items_per_sample``."""
        return int(self._offsets[-1]) if self.indices is None else int(self.indices.size)

    @property
    def items_per_sample(self) -> int:
        """Items made from one sample: its time windows, or 1 without windows. Items of one sample are consecutive."""
        return 1 if self.window is None else self._n_starts

    def _item(self, index: int) -> tuple[int, int]:
        """Item ``index`` as (sample number, first time of its window; 0 without windows)."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"item {index} out of range for {n} items")
        return divmod(index, self._n_starts) if self.window is not None else (index, 0)

    def locate(self, index: int) -> tuple[Path, int]:
        """The file holding global sample ``index`` and the sample's index within it."""
        k, local = self._locate(index)
        return self.files[k], local

    def _locate(self, index: int) -> tuple[int, int]:
        n = self.n_samples
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        if self.indices is not None:
            index = int(self.indices[index])
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return k, int(index - self._offsets[k])

    def _read(self, variables: dict[str, h5py.Dataset], channel: _Channel, local: int, start: int = 0) -> np.ndarray:
        data = variables[channel.source]
        index: tuple[Any, ...] = (local,) if channel.time is None else (local, start + channel.time)
        if channel.component is not None:
            index = (*index, Ellipsis, channel.component)
        if channel.scalar:
            return np.full(self.spatial_shape, data[index], dtype=np.float32)
        return np.asarray(data[index], dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index``: ``{"x": (C_in, *spatial), "y": (C_out, *spatial)}``, float32 tensors."""
        sample, start = self._item(int(index))
        k, local = self._locate(sample)
        try:
            variables = self._files.variables(k)
            x = np.stack([self._read(variables, channel, local, start) for channel in self._input_channels])
            y = np.stack([self._read(variables, channel, local, start) for channel in self._target_channels])
        except OSError as error:
            raise DatasetFileError(self.files[k], f"cannot read sample {local}: {error}") from error
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}

    def close(self) -> None:
        """Close the handles this process opened (they are reopened on the next access)."""
        self._files.close()

    def __repr__(self) -> str:
        return (
            f"FieldDataset({len(self)} samples in {len(self.files)} file(s), {self.inputs} -> {self.targets}, "
            f"spatial {dict(zip(self.spatial_dims, self.spatial_shape))})"
        )
