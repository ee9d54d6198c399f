"""Data for autoregressive (one-step) models: pairs ``u[s, i] -> u[s, i + 1]``, time windows and whole trajectories.

:class:`AutoregressiveDataset` indexes every consecutive pair of states of every trajectory of a split,
``index = s * (T - 1) + i`` for trajectory ``s`` and step ``i`` (with a time window of ``n_in`` states in and
``n_out`` out, every run of ``n_in + n_out`` consecutive states, ``index = s * (T - n_in - n_out + 1) + i``),
with the trajectory's scalar
parameters (e.g. ``dt`` and ``dx`` of the Kuramoto-Sivashinsky data) as conditioning; with
``pairs=False`` it yields whole trajectories (for rollouts). :class:`AutoregressiveDataModule` gives the
train/val/test loaders and the normalization statistics of the training split. Files are read
lazily with h5py, one handle per file and process, like
:class:`~surrogates.data.dataset.FieldDataset`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from surrogates.arguments import as_integer
from surrogates.data.base import SplitDataModule
from surrogates.data.fields import expand_field_names
from surrogates.data.normalization import ChannelMoments, Normalizer
from surrogates.data.schema import TIME_DIM, DatasetFileError, FileInfo, inspect_file, require_variables
from surrogates.data.shards import check_same_coordinates, split_files
from surrogates.data.worker_files import WorkerFiles
from surrogates.schema import DataSchema

__all__ = ["AutoregressiveDataModule", "AutoregressiveDataset"]


def _read_coords(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Values of the coordinates ``names`` of a file."""
    with h5py.File(path, "r") as f:
        return {name: np.asarray(f[name][...]) for name in names}


class AutoregressiveDataset(Dataset):
    """Consecutive states of the trajectories of one split (or whole trajectories).

    Parameters
    ----------
    files
        The split's files; trajectories are numbered file after file.
    state
        Variables stored as ``(sample, time, *spatial)``, stacked as channels (e.g. ``["u"]``).
    conditioning
        Per-trajectory scalar variables ``(sample,)`` (e.g. ``["dt", "dx"]``).
    pairs
        ``True``: item ``s * (T - 1) + i`` is ``{"x": u[s, i], "y": u[s, i + 1], "params", "sample",
        "step"}`` with states ``(C, *spatial)``; ``False``: item ``s`` is ``{"u": (T, C, *spatial),
        "params", "sample"}``.
    n_steps_input, n_steps_output
        Time windows (with ``pairs``): item ``s * W + i``, ``W = T - n_steps_input - n_steps_output + 1``, is
        ``{"x": u[s, i : i + n_in], "y": u[s, i + n_in : i + n_in + n_out], ...}``, each window stacked
        time-major on the channel axis, ``(n_in C, *spatial)`` and ``(n_out C, *spatial)`` (the ``C``
        channels of the oldest state first). 1 and 1 are the pairs above.
    n_trajectories
        Use only the first ``n_trajectories`` trajectories.
    check_finite
        Scan the files for NaN/inf when the dataset is built.

    Examples
    --------
    >>> ds = AutoregressiveDataset(split_files("datasets/ks_256", "train"), ["u"], ["dt", "dx"])  # doctest: +SKIP
    >>> item = ds[0]; item["x"].shape, item["params"]  # doctest: +SKIP
    (torch.Size([1, 256]), tensor([0.7912, 0.2531]))
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        state: Sequence[str] = ("u",),
        conditioning: Sequence[str] = (),
        pairs: bool = True,
        n_trajectories: int | None = None,
        check_finite: bool = True,
        n_steps_input: int = 1,
        n_steps_output: int = 1,
    ):
        self.files = [Path(f) for f in files]
        if int(n_steps_input) < 1 or int(n_steps_output) < 1:
            raise ValueError(f"n_steps_input and n_steps_output must be >= 1, got {n_steps_input}, {n_steps_output}")
        self.n_steps_input, self.n_steps_output = int(n_steps_input), int(n_steps_output)
        if not self.files:
            raise ValueError("AutoregressiveDataset needs at least one file")
        self.state = [str(name) for name in state]
        self.conditioning = [str(name) for name in conditioning]
        if not self.state:
            raise ValueError("need at least one state variable")
        self.pairs = bool(pairs)
        self.infos: list[FileInfo] = []
        for path in self.files:
            info = inspect_file(path, check_finite=check_finite)
            if not self.infos:  # a vector field's name stands for its components (velocity -> velocity_x, velocity_y)
                self.state = expand_field_names(self.state, info.variables)
            require_variables(info, [*self.state, *self.conditioning])
            self._validate(info)
            self.infos.append(info)
        first = self.infos[0].variables[self.state[0]]
        self.n_steps = int(first.shape[1])
        self.spatial_dims = tuple(first.dims[2:])
        self.spatial_shape = tuple(int(n) for n in first.shape[2:])
        if self.pairs and self.n_steps < self.window_length:
            what = "pairs" if self.window_length == 2 else f"windows of {self.n_steps_input} + {self.n_steps_output} states"
            raise DatasetFileError(self.files[0], f"trajectories of {self.n_steps} state(s) hold no {what}")
        counts = [info.n_samples for info in self.infos]
        total = sum(counts)
        if n_trajectories is not None:
            if not 1 <= n_trajectories <= total:
                raise ValueError(f"n_trajectories={n_trajectories} but the files hold {total} trajectories")
            total = int(n_trajectories)
        self.n_trajectories = total
        self._offsets = np.cumsum([0] + counts)
        self.attrs = dict(self.infos[0].attrs)
        self.coords = _read_coords(self.files[0], self.infos[0].coords)
        # trajectories are read on the first file's grid and times: every file must have them
        dims = {dim for name in [*self.state, *self.conditioning] for dim in self.infos[0].variables[name].dims[1:]}
        reference = {name: values for name, values in self.coords.items() if name in dims}
        for info in self.infos[1:]:
            check_same_coordinates(self.files[0], reference, info.path, _read_coords(info.path, [n for n in info.coords if n in dims]))
        self._files = WorkerFiles(self.files, [*self.state, *self.conditioning])

    def _validate(self, info: FileInfo) -> None:
        reference = self.infos[0] if self.infos else info
        for name in self.state:
            var = info.variables[name]
            if len(var.dims) < 2 or var.dims[1] != TIME_DIM:
                raise DatasetFileError(info.path, f"state variable {name!r} must have dims (sample, time, ...), got {var.dims}")
            ref = reference.variables[self.state[0]]
            if var.dims[1:] != ref.dims[1:] or var.shape[1:] != ref.shape[1:]:
                raise DatasetFileError(
                    info.path, f"state variable {name!r} has dims {var.dims} shape {var.shape}, expected {ref.dims} {ref.shape}"
                )
        for name in self.conditioning:
            var = info.variables[name]
            if var.dims[1:]:
                raise DatasetFileError(info.path, f"conditioning variable {name!r} must be a per-sample scalar, got dims {var.dims}")

    # -- sizes ------------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        """State channels ``C``."""
        return len(self.state)

    @property
    def window_length(self) -> int:
        """States read per item: ``n_steps_input + n_steps_output`` (2 for pairs)."""
        return self.n_steps_input + self.n_steps_output

    @property
    def pairs_per_trajectory(self) -> int:
        """Items per trajectory: ``T - 1`` pairs, or ``T - n_steps_input - n_steps_output + 1`` windows."""
        return self.n_steps - self.window_length + 1

    def __len__(self) -> int:
        return self.n_trajectories * (self.pairs_per_trajectory if self.pairs else 1)

    def _locate(self, sample: int) -> tuple[int, int]:
        k = int(np.searchsorted(self._offsets, sample, side="right")) - 1
        return k, int(sample - self._offsets[k])

    # -- access -----------------------------------------------------------------------------------
    def read(self, sample: int, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """States ``start:stop`` of trajectory ``sample`` ``(n, C, *spatial)`` and its parameters ``(P,)``, float32."""
        if not 0 <= sample < self.n_trajectories:
            raise IndexError(f"trajectory {sample} out of range for {self.n_trajectories} trajectories")
        k, local = self._locate(sample)
        try:
            variables = self._files.variables(k)
            states = np.stack([np.asarray(variables[name][local, start:stop], dtype=np.float32) for name in self.state], axis=1)
            params = np.array([variables[name][local] for name in self.conditioning], dtype=np.float32)
        except OSError as error:
            raise DatasetFileError(self.files[k], f"cannot read trajectory {local}: {error}") from error
        return states, params

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        if not self.pairs:
            states, params = self.read(index)
            return {"u": torch.from_numpy(states), "params": torch.from_numpy(params), "sample": index}
        sample, step = divmod(index, self.pairs_per_trajectory)
        states, params = self.read(sample, step, step + self.window_length)
        n_in, shape = self.n_steps_input, states.shape[2:]
        return {
            "x": torch.from_numpy(states[:n_in].reshape(-1, *shape)),  # time-major: (n_in C, *spatial)
            "y": torch.from_numpy(states[n_in:].reshape(-1, *shape)),
            "params": torch.from_numpy(params),
            "sample": sample,
            "step": step,
        }

    def trajectories(self, samples: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole trajectories ``(S, T, C, *spatial)`` and parameters ``(S, P)`` (default: all)."""
        samples = range(self.n_trajectories) if samples is None else samples
        read = [self.read(int(s)) for s in samples]
        if not read:
            raise ValueError("no trajectories selected")
        return torch.from_numpy(np.stack([r[0] for r in read])), torch.from_numpy(np.stack([r[1] for r in read]))

    def parameters(self) -> torch.Tensor:
        """The parameters ``(S, P)`` of every trajectory, float32 as :meth:`read` gives them, without their states."""
        params = np.zeros((self.n_trajectories, len(self.conditioning)), dtype=np.float32)
        for k in range(len(self.files)):
            lo, hi = int(self._offsets[k]), min(int(self._offsets[k + 1]), self.n_trajectories)
            if lo >= hi:
                break
            try:
                variables = self._files.variables(k)
                for j, name in enumerate(self.conditioning):
                    params[lo:hi, j] = np.asarray(variables[name][: hi - lo], dtype=np.float32)
            except OSError as error:
                raise DatasetFileError(self.files[k], f"cannot read the parameters: {error}") from error
        return torch.from_numpy(params)

    def statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-channel mean and std of every state of every trajectory, and the mean of each parameter (float64)."""
        moments = ChannelMoments()  # a stable merge: these are fields like 300 K +- 0.01, not zero-mean noise
        params = []
        for s in range(self.n_trajectories):
            states, p = self.read(s)
            moments.add(np.moveaxis(states, 1, 0).reshape(self.channels, -1))
            params.append(p)
        mean, std = moments.mean, moments.std
        param_mean = np.mean(np.stack(params), axis=0, dtype=np.float64) if self.conditioning else np.zeros(0)
        return mean, std, param_mean.astype(np.float64)

    def close(self) -> None:
        """Close the handles this process opened (reopened on the next access)."""
        self._files.close()

    def __repr__(self) -> str:
        kind = ("pairs" if self.window_length == 2 else f"windows {self.n_steps_input} -> {self.n_steps_output}") if self.pairs else "trajectories"
        return (
            f"AutoregressiveDataset({len(self)} {kind} from {self.n_trajectories} trajectories of {self.n_steps} states, "
            f"state {self.state}, conditioning {self.conditioning}, spatial {dict(zip(self.spatial_dims, self.spatial_shape))})"
        )


class AutoregressiveDataModule(SplitDataModule):
    """Loaders of one-step pairs from a folder of trajectory splits, with training-split normalization.

    Batches are pairs ``{"x", "y": (B, C, *spatial), "params": (B, P), "sample", "step"}`` (shuffled for
    training); splits, loaders and their settings are those of :class:`~surrogates.data.base.SplitDataModule`.

    Parameters
    ----------
    data_dir
        Folder with ``train`` / ``val`` / ``test`` files (single or sharded).
    inputs
        State variables ``(sample, time, *spatial)``, one channel each; they are also the targets.
    conditioning
        Per-trajectory scalars given to the model (e.g. ``["dt", "dx"]``).
    batch_size, num_workers, pin_memory
        DataLoader settings (persistent workers when ``num_workers > 0``).
    seed
        Seeds the training shuffle.
    n_train, n_val, n_test
        Use only the first trajectories of a split (statistics from the ``n_train`` used).
    n_steps_input, n_steps_output
        Time windows: ``n_steps_input`` states in, the next ``n_steps_output`` out (batches ``x`` ``(B, n_in C,
        *spatial)``, ``y`` ``(B, n_out C, *spatial)``, time-major); 1 and 1 are the pairs.
    check_finite
        Scan the files for NaN/inf when they are opened.

    Attributes
    ----------
    state_normalizer : Normalizer
        Per-channel mean and std of the training states.
    param_scale : np.ndarray
        Training mean of every conditioning variable; the model sees ``params / param_scale``.
    """

    def __init__(
        self,
        data_dir: str | Path,
        inputs: Sequence[str] = ("u",),
        conditioning: Sequence[str] = (),
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        n_train: int | None = None,
        n_val: int | None = None,
        n_test: int | None = None,
        check_finite: bool = True,
        pin_memory: bool = False,
        n_steps_input: int = 1,
        n_steps_output: int = 1,
    ):
        super().__init__(data_dir, batch_size, num_workers, seed, check_finite, pin_memory)
        n_steps_input, n_steps_output = as_integer("n_steps_input", n_steps_input), as_integer("n_steps_output", n_steps_output)
        if n_steps_input < 1 or n_steps_output < 1:
            raise ValueError(f"n_steps_input and n_steps_output must be >= 1, got {n_steps_input}, {n_steps_output}")
        self.n_steps_input, self.n_steps_output = n_steps_input, n_steps_output
        self.inputs = [str(name) for name in inputs]
        self.conditioning = [str(name) for name in conditioning]
        self.limits = {name: None if limit is None else as_integer(f"n_{name}", limit)
                       for name, limit in (("train", n_train), ("val", n_val), ("test", n_test))}
        self.datasets: dict[str, AutoregressiveDataset] = {}
        self.state_normalizer: Normalizer | None = None
        self.param_scale: np.ndarray | None = None

    @property
    def targets(self) -> list[str]:
        return list(self.inputs)

    def dataset(self, split: str, pairs: bool = True) -> AutoregressiveDataset:
        """The split's pairs (cached) or a new dataset of whole trajectories."""
        if pairs and split in self.datasets:
            return self.datasets[split]
        limit = self.limits.get(split)
        dataset = AutoregressiveDataset(
            split_files(self.data_dir, split), self.inputs, self.conditioning, pairs=pairs,
            n_trajectories=None if limit is None else int(limit), check_finite=self.check_finite,
            n_steps_input=self.n_steps_input, n_steps_output=self.n_steps_output,
        )
        if pairs:
            self.datasets[split] = dataset
        self.inputs = list(dataset.state)  # a vector field's name becomes its components
        return dataset

    def expand_fields(self) -> tuple[list[str], list[str]]:
        """The state variables with every vector field's name replaced by its components (``velocity`` ->
        ``velocity_x``, ``velocity_y``), read from the training file; returned as ``(inputs, targets)``, both the state."""
        self.dataset("train")
        return list(self.inputs), list(self.inputs)

    def _load(self, split: str) -> AutoregressiveDataset:
        return self.dataset(split)

    def _setup_train(self) -> None:
        train = self.dataset("train")
        if self.state_normalizer is None:
            mean, std, param_mean = train.statistics()
            self.state_normalizer = Normalizer.from_stats(mean, std)
            self.param_scale = np.where(param_mean != 0, np.abs(param_mean), 1.0)
            train.close()
        self.train_set = train

    def data_schema(self) -> DataSchema:
        """What a model trained on this data expects: a ``trajectory`` :class:`~surrogates.schema.DataSchema`
        with the ``state`` variables (inputs and targets alike), the ``conditioning`` parameters, ``n_steps`` and,
        with a time window, ``window`` (``inputs`` and ``targets`` stay the state variables)."""
        dataset = next(iter(self.datasets.values()), None) or self.dataset("train")
        window = None
        if (self.n_steps_input, self.n_steps_output) != (1, 1):
            window = {"inputs": list(self.inputs), "targets": list(self.inputs),
                      "n_steps_input": self.n_steps_input, "n_steps_output": self.n_steps_output}
        return self._schema(
            dataset, {*self.inputs, *self.conditioning}, kind="trajectory", inputs=tuple(self.inputs),
            targets=tuple(self.inputs), state=tuple(self.inputs), conditioning=tuple(self.conditioning), n_steps=dataset.n_steps,
            window=window,
        )
