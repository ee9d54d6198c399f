"""`FieldDataModule`: the train/val/test splits of a dataset folder, with training-split normalization."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from surrogates.data.dataset import FieldDataset
from surrogates.data.normalization import Normalizer, channel_statistics
from surrogates.data.schema import SCHEMA_VERSION
from surrogates.data.shards import has_split, split_files


class FieldDataModule(L.LightningDataModule):
    """Loaders of a dataset folder (``train``, ``val``, ``test`` splits, single files or shards).

    Normalization statistics (per-channel mean and std, see
    :mod:`surrogates.data.normalization`) are computed from the training split only and exposed as
    :attr:`input_normalizer` / :attr:`target_normalizer`; the task copies them into its checkpoint.

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
        Use only the first ``n_train`` training samples (statistics included).
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
    ):
        super().__init__()
        self.data_dir = Path(str(data_dir))
        self.inputs = [str(name) for name in inputs]
        self.targets = [str(name) for name in targets]
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.input_time = None if input_time is None else int(input_time)
        self.target_time = None if target_time is None else int(target_time)
        self.seed = int(seed)
        self.n_train = None if n_train is None else int(n_train)
        self.check_finite = bool(check_finite)
        self.pin_memory = bool(pin_memory)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(f"n_train must be positive, got {n_train}")
        self.datasets: dict[str, FieldDataset] = {}
        self.train_set: Dataset | None = None
        self.input_normalizer: Normalizer | None = None
        self.target_normalizer: Normalizer | None = None

    # -- setup ------------------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Number of input channels (one per input variable)."""
        return len(self.inputs)

    @property
    def out_channels(self) -> int:
        """Number of target channels (one per target variable)."""
        return len(self.targets)

    def _load(self, split: str) -> FieldDataset:
        if split not in self.datasets:
            self.datasets[split] = FieldDataset(
                split_files(self.data_dir, split),
                self.inputs,
                self.targets,
                input_time=self.input_time,
                target_time=self.target_time,
                check_finite=self.check_finite,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs and, once, the normalizers from the training split.

        ``fit`` needs ``train`` (``val`` is used when present), ``validate`` needs ``val``,
        ``test`` and ``predict`` need ``test``; ``None`` loads ``train`` and every other split
        present. Datasets and statistics are built once and reused by later calls.
        """
        if stage in (None, "fit"):
            self._setup_train()
            if has_split(self.data_dir, "val"):
                self._load("val")
        if stage == "validate":
            self._load("val")
        if stage in ("test", "predict") or (stage is None and has_split(self.data_dir, "test")):
            self._load("test")

    def _setup_train(self) -> None:
        if self.train_set is not None:
            return
        full = self._load("train")
        if self.n_train is None:
            train: Dataset = full
        elif self.n_train > len(full):
            raise ValueError(
                f"n_train={self.n_train} but the training split of {self.data_dir} has {len(full)} samples"
            )
        else:
            train = Subset(full, range(self.n_train))
        stats_batch = max(self.batch_size, 64)
        self.input_normalizer = Normalizer.from_stats(*channel_statistics(train, "x", stats_batch))
        self.target_normalizer = Normalizer.from_stats(*channel_statistics(train, "y", stats_batch))
        full.close()  # opened in this process; workers open their own handles
        self.train_set = train

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return make_loader(dataset, self.batch_size, shuffle, self.seed, self.num_workers, self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches ``{"x": (B, C_in, *spatial), "y": (B, C_out, *spatial)}``."""
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in file order; an empty list when the folder has no ``val`` split."""
        if "val" not in self.datasets and not has_split(self.data_dir, "val"):
            return []
        return self._loader(self._load("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self._loader(self._load("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split in file order."""
        return self.test_dataloader()

    # -- description ------------------------------------------------------------------------------
    def _reference(self) -> FieldDataset:
        for split in ("train", "val", "test"):
            if split in self.datasets:
                return self.datasets[split]
        return FieldDataset(
            split_files(self.data_dir, "train"), self.inputs, self.targets,
            input_time=self.input_time, target_time=self.target_time, check_finite=False,
        )

    def data_schema(self) -> dict[str, Any]:
        """What a model trained on this data expects, JSON-serializable, for checkpoints.

        Returns
        -------
        dict
            ``pde``, ``schema_version``, ``data_dir``, ``inputs``, ``targets``, ``input_time``,
            ``target_time``, ``spatial_dims`` (e.g. ``["x", "y"]``), ``spatial_shape``,
            ``variables`` (name -> stored dims, e.g. ``["sample", "x", "y"]``) and ``coords``
            (name -> ``size``, ``units``, ``long_name``, ``min``, ``max``).
        """
        dataset = self._reference()
        info = dataset.infos[0]
        coords = {}
        for name, values in dataset.coords.items():
            attrs = info.coords[name].attrs
            coords[name] = {
                "size": int(values.size),
                "units": str(attrs.get("units", "")),
                "long_name": str(attrs.get("long_name", "")),
                "min": float(values.min()) if values.size else None,
                "max": float(values.max()) if values.size else None,
            }
        return {
            "pde": str(dataset.attrs.get("pde", "")),
            "schema_version": str(dataset.attrs.get("schema_version", SCHEMA_VERSION)),
            "data_dir": str(self.data_dir),
            "inputs": list(self.inputs),
            "targets": list(self.targets),
            "input_time": self.input_time,
            "target_time": self.target_time,
            "spatial_dims": list(dataset.spatial_dims),
            "spatial_shape": list(dataset.spatial_shape),
            "variables": {name: list(info.variables[name].dims) for name in sorted(dataset.variable_dims)},
            "coords": coords,
        }


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
