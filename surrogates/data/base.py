"""`SplitDataModule`: what the DataModules of dataset folders share.

A folder of ``train`` / ``val`` / ``test`` splits (single files or shards), the DataLoader settings,
which splits a stage needs, the seeded loaders, and the coordinates part of the data schema.
:class:`~surrogates.data.datamodule.FieldDataModule` (and its space-time variant) and
:class:`~surrogates.data.autoregressive.AutoregressiveDataModule` add their dataset, the statistics
of their training split and the rest of their data schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from surrogates.data.shards import has_split
from surrogates.data.schema import SCHEMA_VERSION
from surrogates.schema import Coordinate, DataSchema, Variable

__all__ = ["SplitDataModule", "make_loader"]


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
        Seeds the training shuffle: the same seed gives the same batches, whatever ``num_workers``.
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
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
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
    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return make_loader(dataset, self.batch_size, shuffle, self.seed, self.num_workers, self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (set up for ``fit`` on first use)."""
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

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
            source=str(self.data_dir),
            spatial_dims=tuple(dataset.spatial_dims),
            spatial_shape=tuple(dataset.spatial_shape),
            variables=self._schema_variables(dataset, variables),
            coords=self._schema_coords(dataset),
            **fields,
        )

    @staticmethod
    def _schema_coords(dataset: Any) -> dict[str, Coordinate]:
        """The coordinates of a split's dataset as the data schema records them (extent, units, boundary)."""
        info = dataset.infos[0]
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
            out[name] = Variable(
                name, tuple(stored.dims[1:]), str(stored.attrs.get("units") or "1"), str(stored.attrs.get("long_name") or "")
            )
        return out


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """The DataLoader every DataModule of the package uses: seeded shuffling, persistent workers.

    The shuffle order depends on ``seed`` only, so runs with 0 and with several workers see the same
    batches; each worker opens its own HDF5 handles (the datasets open lazily).
    """
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
