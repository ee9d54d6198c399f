"""`FieldDataModule`: the train/val/test splits of a dataset folder, with training-split normalization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from torch.utils.data import Dataset, Subset

from surrogates.arguments import as_integer
from surrogates.data.base import SplitDataModule, make_loader
from surrogates.data.dataset import FieldDataset
from surrogates.data.normalization import Normalizer, channel_statistics
from surrogates.data.shards import split_files
from surrogates.schema import DataSchema, Variable

__all__ = ["FieldDataModule", "make_loader"]


class FieldDataModule(SplitDataModule):
    """Loaders of a dataset folder (``train``, ``val``, ``test`` splits, single files or shards).

    Normalization statistics (per-channel mean and std, see
    :mod:`surrogates.data.normalization`) are computed from the training split only and exposed as
    :attr:`input_normalizer` / :attr:`target_normalizer`; the task copies them into its saved model (``task.model``).

    Parameters
    ----------
    data_dir
        Folder with ``train.h5`` / ``val.h5`` / ``test.h5`` or their shards.
    inputs, targets
        Variable names stacked as input / target channels (lists or Hydra ``ListConfig``).
    batch_size, num_workers, pin_memory
        DataLoader settings; workers are persistent when ``num_workers > 0``.
    input_time, target_time
        Time indices for time-dependent variables (see :class:`~surrogates.data.dataset.FieldDataset`).
    seed
        Seeds the training shuffle: the same seed gives the same batches, whatever ``num_workers``.
    n_train
        Use only the first ``n_train`` training samples (statistics included); with time windows, every window
        of the first ``n_train`` trajectories.
    n_steps_input, n_steps_output
        Time windows instead of ``input_time`` / ``target_time`` (see
        :class:`~surrogates.data.dataset.FieldDataset`): ``n_steps_input`` states of each input in, the next
        ``n_steps_output`` states of each target out, from every run of consecutive stored times.
    check_finite
        Scan the files for NaN/inf when they are opened.

    Examples
    --------
    >>> dm = FieldDataModule("datasets/darcy_64", inputs=["a"], targets=["u"])  # doctest: +SKIP
    >>> dm.setup("fit"); batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
    >>> batch["x"].shape  # (batch, C_in, x, y)  # doctest: +SKIP
    torch.Size([20, 1, 64, 64])
    """

    def __init__(
        self,
        data_dir: str | Path,
        inputs: Sequence[str],
        targets: Sequence[str],
        batch_size: int = 20,
        num_workers: int = 0,
        input_time: int | None = None,
        target_time: int | None = None,
        seed: int = 0,
        n_train: int | None = None,
        check_finite: bool = True,
        pin_memory: bool = False,
        n_steps_input: int | None = None,
        n_steps_output: int | None = None,
    ):
        super().__init__(data_dir, batch_size, num_workers, seed, check_finite, pin_memory)
        self.n_steps_input = None if n_steps_input is None else as_integer("n_steps_input", n_steps_input)
        self.n_steps_output = None if n_steps_output is None else as_integer("n_steps_output", n_steps_output)
        self.inputs = [str(name) for name in inputs]
        self.targets = [str(name) for name in targets]
        self.input_time = None if input_time is None else as_integer("input_time", input_time)
        self.target_time = None if target_time is None else as_integer("target_time", target_time)
        self.n_train = None if n_train is None else as_integer("n_train", n_train)
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train must be positive, got {n_train}")
        self.datasets: dict[str, FieldDataset] = {}
        self.input_normalizer: Normalizer | None = None
        self.target_normalizer: Normalizer | None = None

    # -- setup ------------------------------------------------------------------------------------
    def _load(self, split: str) -> FieldDataset:
        if split not in self.datasets:
            self.datasets[split] = FieldDataset(
                split_files(self.data_dir, split),
                self.inputs,
                self.targets,
                input_time=self.input_time,
                target_time=self.target_time,
                check_finite=self.check_finite,
                n_steps_input=self.n_steps_input,
                n_steps_output=self.n_steps_output,
            )
            self._take_names(self.datasets[split])
        return self.datasets[split]

    def _take_names(self, dataset: FieldDataset) -> None:
        """Take a dataset's names: fields named by the user become their components (``velocity_x``, ...)."""
        self.inputs, self.targets = list(dataset.inputs), list(dataset.targets)

    def expand_fields(self) -> tuple[list[str], list[str]]:
        """The inputs and targets with every vector field's name replaced by its components, read from the
        training file (``velocity`` -> ``velocity_x``, ``velocity_y``); they become :attr:`inputs` and :attr:`targets`.

        ``surrogates-train`` calls this before it builds the model, whose channel counts follow the names."""
        self._take_names(self._reference())
        return list(self.inputs), list(self.targets)

    def _setup_train(self) -> None:
        if self.train_set is not None:
            return
        full = self._load("train")
        if self.n_train is None:
            train: Dataset = full
        elif self.n_train > full.n_samples:
            raise ValueError(
                f"n_train={self.n_train} but the training split of {self.data_dir} has {full.n_samples} samples"
            )
        else:
            # n_train counts samples (trajectories), not time windows: every window of the first n_train samples
            train = Subset(full, range(self.n_train * full.items_per_sample))
        stats_batch = max(self.batch_size, 64)
        self.input_normalizer = Normalizer.from_stats(*channel_statistics(train, "x", stats_batch))
        self.target_normalizer = Normalizer.from_stats(*channel_statistics(train, "y", stats_batch))
        full.close()  # opened in this process; workers open their own handles
        self.train_set = train

    # -- description ------------------------------------------------------------------------------
    def _reference(self) -> FieldDataset:
        for split in ("train", "val", "test"):
            if split in self.datasets:
                return self.datasets[split]
        return FieldDataset(
            split_files(self.data_dir, "train"), self.inputs, self.targets, input_time=self.input_time,
            target_time=self.target_time, check_finite=False, n_steps_input=self.n_steps_input,
            n_steps_output=self.n_steps_output,
        )

    @property
    def in_channels(self) -> int:
        """Input channels: one per input variable, times ``n_steps_input`` with time windows."""
        return len(self.inputs) * (self.n_steps_input or 1)

    @property
    def out_channels(self) -> int:
        """Target channels: one per target variable, times ``n_steps_output`` with time windows."""
        return len(self.targets) * (self.n_steps_output or 1)

    def data_schema(self) -> DataSchema:
        """What a model trained on this data expects: the :class:`~surrogates.schema.DataSchema` of the
        input and target variables, their coordinates and grid, read from the dataset files."""
        dataset = self._reference()
        schema = self._schema(
            dataset, dataset.variable_dims, kind="fields", inputs=tuple(dataset.input_names),
            targets=tuple(dataset.target_names), input_time=self.input_time, target_time=self.target_time,
        )
        if dataset.window is None:
            return schema
        # a window's channels are fields on the grid, named u_t0, u_t1 ...; the stored variables are kept aside
        channels = {}
        for channel in [*dataset._input_channels, *dataset._target_channels]:
            stored = schema.variables[channel.variable]
            channels[channel.name] = Variable(
                channel.name, tuple(schema.spatial_dims), stored.units, f"{stored.long_name or channel.variable} at window step {channel.time}"
            )
        window = {"inputs": list(self.inputs), "targets": list(self.targets),
                  "n_steps_input": dataset.window[0], "n_steps_output": dataset.window[1]}
        components = {  # so that answers put the components of vector fields back together (Surrogate.predict)
            name: {"field": c.field, "label": c.label, "dim": c.dim}
            for name in dict.fromkeys([*self.inputs, *self.targets])
            if (c := schema.variables[name].component) is not None
        }
        if components:
            window["components"] = components
        return replace(schema, variables=channels, window=window)

