"""`SplitDataModule`: what the DataModules of dataset folders share.

A folder of ``train`` / ``val`` / ``test`` splits (single files or shards), the DataLoader settings,
which splits a stage needs, the seeded loaders, and the coordinates part of the data schema.

The training shuffle is a function of ``(seed, epoch)`` (:class:`EpochShuffleSampler`), and a loader
made while a fit resumes mid-epoch starts at the first batch not yet trained
(:func:`training_position`): a resumed run sees the batches the uninterrupted run saw. With several
processes (``trainer=ddp``) each trains on its share of that order (:class:`DistributedEpochShuffleSampler`)
and evaluates every ``world_size``-th validation or test sample, none twice.
:class:`~surrogates.data.datamodule.FieldDataModule` (and its space-time variant) and
:class:`~surrogates.data.autoregressive.AutoregressiveDataModule` add their dataset, the statistics
of their training split and the rest of their data schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from surrogates.arguments import as_integer
from surrogates.data.grids import check_uniform
from surrogates.data.shards import has_split
from surrogates.data.schema import SCHEMA_VERSION, source_dims
from surrogates.schema import Component, Coordinate, DataSchema, Variable

__all__ = ["DistributedEpochShuffleSampler", "EpochShuffleSampler", "SplitDataModule", "make_loader", "training_position"]


class SplitDataModule(L.LightningDataModule):
    """Loaders of the ``train`` / ``val`` / ``test`` splits of a dataset folder.

    Subclasses build a split's dataset in :meth:`_load` (once, cached in :attr:`datasets`) and the
    training set with its statistics in :meth:`_setup_train` (once, stored in :attr:`train_set`), and
    name their channels in ``inputs`` and ``targets``.

    Parameters
    ----------
    data_dir
        Folder with ``train`` / ``val`` / ``test`` files (single or sharded).
    batch_size, num_workers, pin_memory
        DataLoader settings; workers are persistent when ``num_workers > 0``.
    seed
        Seeds the training shuffle: the same seed gives the same batches, whatever ``num_workers``;
        each epoch has its own order, a function of ``(seed, epoch)``.
    check_finite
        Scan the files for NaN/inf when they are opened.
    """

    inputs: list[str]
    targets: list[str]

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        check_finite: bool = True,
        pin_memory: bool = False,
    ):
        super().__init__()
        self.data_dir = Path(str(data_dir))
        self.batch_size = as_integer("batch_size", batch_size)
        self.num_workers = as_integer("num_workers", num_workers)
        self.seed = as_integer("seed", seed)
        self.check_finite = bool(check_finite)
        self.pin_memory = bool(pin_memory)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.datasets: dict[str, Dataset] = {}
        self.train_set: Dataset | None = None

    # -- what subclasses provide ------------------------------------------------------------------
    def _load(self, split: str) -> Dataset:
        """The dataset of ``split``, built on first use and cached in :attr:`datasets`."""
        raise NotImplementedError

    def _setup_train(self) -> None:
        """Build the training set (:attr:`train_set`) and, once, the statistics of the training split."""
        raise NotImplementedError

    def _has_split(self, split: str) -> bool:
        """Whether the data have ``split`` (a complete file or set of shards in :attr:`data_dir`)."""
        return has_split(self.data_dir, split)

    # -- channels ---------------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Number of input channels (one per input variable)."""
        return len(self.inputs)

    @property
    def out_channels(self) -> int:
        """Number of target channels (one per target variable)."""
        return len(self.targets)

    # -- setup ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs and, once, the statistics of the training split.

        ``fit`` needs ``train`` (``val`` is used when present), ``validate`` needs ``val``,
        ``test`` and ``predict`` need ``test``; ``None`` loads ``train`` and every other split
        present. Datasets and statistics are built once and reused by later calls.
        """
        if stage in (None, "fit"):
            self._setup_train()
            if self._has_split("val"):
                self._load("val")
        if stage == "validate":
            self._load("val")
        if stage in ("test", "predict") or (stage is None and self._has_split("test")):
            self._load("test")

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, shuffle: bool, epoch: int = 0, start_batch: int = 0) -> DataLoader:
        sampler: Sampler | None = None
        if self.trainer is not None and self.trainer.world_size > 1:
            world, rank = self.trainer.world_size, self.trainer.global_rank
            if shuffle:
                # Training with several processes: this process's share of the (seed, epoch) order, from
                # the first batch not yet trained (Lightning keeps a DistributedSampler as it is)
                sampler = DistributedEpochShuffleSampler(len(dataset), self.seed, world, rank, epoch, start_batch * self.batch_size)
            else:
                # Evaluation with several processes: each takes every world_size-th sample, none repeated
                # (Lightning's own DistributedSampler pads the last round with repeats); the tasks add sums
                # and counts across processes (surrogates.tasks.reduction), so the split is evaluated once.
                sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return make_loader(
            dataset, self.batch_size, shuffle, self.seed, self.num_workers, self.pin_memory, epoch, start_batch, sampler
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (set up for ``fit`` on first use).

        In a fit resumed from a checkpoint, the loader starts where the checkpoint's training loop
        stood: the epoch's order, from its first batch not yet trained.
        """
        if self.train_set is None:
            self.setup("fit")
        epoch, done = training_position(self.trainer)
        return self._loader(self.train_set, shuffle=True, epoch=epoch, start_batch=done)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in file order; an empty list when the folder has no ``val`` split."""
        if "val" not in self.datasets and not self._has_split("val"):
            return []
        return self._loader(self._load("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self._loader(self._load("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split in file order."""
        return self.test_dataloader()

    # -- description ------------------------------------------------------------------------------
    def _schema(self, dataset: Any, variables: Any, **fields: Any) -> DataSchema:
        """The :class:`~surrogates.schema.DataSchema` of a split's dataset: what every kind of data shares (the
        provenance, the grid, the ``variables`` and their coordinates) plus the kind's own ``fields``."""
        return DataSchema(
            pde=str(dataset.attrs.get("pde", "")),
            schema_version=str(dataset.attrs.get("schema_version", SCHEMA_VERSION)),
            # absolute: evaluation reads the folder again, from whatever working directory it runs in
            source=str(self.data_dir.absolute()),
            spatial_dims=tuple(dataset.spatial_dims),
            spatial_shape=tuple(dataset.spatial_shape),
            variables=self._schema_variables(dataset, variables),
            coords=self._schema_coords(dataset),
            source_dims=source_dims(dataset.attrs),  # files imported from a user's xarray file: its dim names
            **fields,
        )

    @staticmethod
    def _schema_coords(dataset: Any) -> dict[str, Coordinate]:
        """The coordinates of a split's dataset as the data schema records them (extent, units, boundary)."""
        info = dataset.infos[0]
        check_uniform(info.path, dataset.coords, dataset.spatial_dims)
        coords = {}
        for name, values in dataset.coords.items():
            attrs = info.coords[name].attrs
            coords[name] = Coordinate(
                name,
                int(values.size),
                str(attrs.get("units") or "1"),
                str(attrs.get("long_name") or ""),
                float(values.min()) if values.size else None,
                float(values.max()) if values.size else None,
                boundary="periodic" if attrs.get("periodic") else "bounded",
            )
        return coords

    @staticmethod
    def _schema_variables(dataset: Any, names: Any) -> dict[str, Variable]:
        """The variables ``names`` of a split's dataset as the data schema records them (dims of one sample)."""
        info = dataset.infos[0]
        out = {}
        for name in sorted(names):
            stored = info.variables[name]
            field, label = stored.attrs.get("field"), stored.attrs.get("component")
            component = Component(str(field), str(label), str(stored.attrs.get("component_dim") or "component")) if field and label else None
            out[name] = Variable(
                name, tuple(stored.dims[1:]), str(stored.attrs.get("units") or "1"), str(stored.attrs.get("long_name") or ""),
                component,
            )
        return out


def training_position(trainer: L.Trainer | None) -> tuple[int, int]:
    """Where a fit stands: ``(epoch, batches of that epoch already trained)``; ``(0, 0)`` outside a fit.

    Lightning restores its loop counters from a checkpoint before it asks for the training loader,
    so a loader made then can start where the interrupted run stopped. A checkpoint written at an
    epoch's end (every batch trained and processed) resumes at the start of the next epoch.

    Parameters
    ----------
    trainer
        The trainer the DataModule is attached to, or ``None``.
    """
    if trainer is None:
        return 0, 0
    epochs = trainer.fit_loop.epoch_progress.current
    # `started` counts the epoch in progress, `processed` only the finished ones
    mid_epoch = epochs.processed < epochs.started
    batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed if mid_epoch else 0
    return int(epochs.processed), int(batches)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed of ``(seed, epoch, stream)``, well mixed (nearby seeds and epochs share nothing)."""
    entropy = [int(seed) % 2**64, int(epoch), int(stream)]  # SeedSequence takes non-negative numbers only
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


class EpochShuffleSampler(Sampler[int]):
    """Random order of ``size`` indices that depends on ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` before each epoch. Nothing carries over from one epoch to the
    next, so a run resumed at any epoch sees the order the uninterrupted run saw; ``start`` skips the
    first indices of one pass (a run resumed mid-epoch).

    Parameters
    ----------
    size
        Number of samples.
    seed
        Seed of every epoch's order.
    epoch
        The epoch of the first pass.
    start
        Indices of the first pass to skip (the samples already trained on); later passes start at 0.

    Attributes
    ----------
    generator : torch.Generator
        Handed to the ``DataLoader`` (which draws its worker seeds from it), re-seeded from
        ``(seed, epoch)`` each epoch: the loader then never draws from torch's global generator,
        whose state a resumed run restores separately.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, start: int = 0):
        self.size, self.seed = int(size), int(seed)
        self.generator = torch.Generator()
        self.epoch = int(epoch)
        self.set_epoch(epoch)
        self.start = int(start)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order from now on (a new epoch also drops a pending ``start``)."""
        if int(epoch) != self.epoch:
            self.start = 0
        self.epoch = int(epoch)
        self.generator.manual_seed(_epoch_seed(self.seed, self.epoch, stream=1))

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of ``epoch`` (a function of ``seed`` and ``epoch`` only)."""
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, int(epoch), stream=0))
        return torch.randperm(self.size, generator=generator)

    def __iter__(self):
        start, self.start = self.start, 0
        yield from self.order(self.epoch)[start:].tolist()

    def __len__(self) -> int:
        # the whole epoch, also when resuming in it: Lightning counts the batches already trained
        return self.size


class DistributedEpochShuffleSampler(DistributedSampler):
    """One process's share of :class:`EpochShuffleSampler`'s order: what ``trainer=ddp`` trains on.

    The epoch's order (a function of ``(seed, epoch)``) is padded with its first indices to a multiple of
    ``num_replicas`` (as torch's ``DistributedSampler``: every process takes as many steps) and process
    ``rank`` takes every ``num_replicas``-th index from ``rank``. ``start`` skips this process's first
    indices of one pass: a run resumed mid-epoch continues with the batches the uninterrupted run took
    next, on every process. Lightning keeps a ``DistributedSampler`` as it is and calls :meth:`set_epoch`.
    """

    def __init__(self, size: int, seed: int, num_replicas: int, rank: int, epoch: int = 0, start: int = 0):
        super().__init__(range(int(size)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.order_of = EpochShuffleSampler(size, seed, epoch, start)
        self.generator = self.order_of.generator

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.order_of.set_epoch(epoch)

    def __iter__(self):
        order = self.order_of.order(self.order_of.epoch).tolist()
        order += order[: self.total_size - len(order)] if self.total_size > len(order) else []
        start, self.order_of.start = self.order_of.start, 0
        yield from order[self.rank : self.total_size : self.num_replicas][start:]

    def __len__(self) -> int:
        return self.num_samples  # the whole epoch, as EpochShuffleSampler


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int,
    pin_memory: bool,
    epoch: int = 0,
    start_batch: int = 0,
    sampler: Sampler | None = None,
) -> DataLoader:
    """The DataLoader every DataModule of the package uses: seeded shuffling, persistent workers.

    The shuffle order depends on ``seed`` and the epoch only (:class:`EpochShuffleSampler`), so runs
    with 0 and with several workers, and runs resumed from a checkpoint, see the same batches; each
    worker opens its own HDF5 handles (the datasets open lazily).

    Parameters
    ----------
    epoch, start_batch
        Where a shuffled loader starts: ``epoch``'s order from batch ``start_batch`` (a resumed fit).
    sampler
        Another order (the distributed samplers of :meth:`SplitDataModule._loader`); by default the
        :class:`EpochShuffleSampler` when shuffling, file order otherwise.
    """
    if sampler is None and shuffle:
        sampler = EpochShuffleSampler(len(dataset), seed, epoch, start_batch * batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        generator=getattr(sampler, "generator", None),  # the loader draws its worker seeds from it
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
