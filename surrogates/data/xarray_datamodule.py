"""`XarrayDataModule` (``data=xarray``): train on your own NetCDF-4/HDF5 files without converting them.

Give the file(s) and the names: ``surrogates-train data=xarray data.path=my.nc data.inputs=[a]
data.targets=[u]``. The files need no attributes of ours; their variables need a sample dim (first,
named by ``sample_dim``). One file is split into train / val / test by ``val_fraction`` and
``test_fraction`` with ``split_seed``; files per split are given as ``train``, ``val``, ``test``.
Samples are read lazily, one h5py handle per file and worker process, as for the package's own datasets
(:class:`~surrogates.data.dataset.FieldDataset`, :mod:`surrogates.data.foreign`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.datamodule import FieldDataModule
from surrogates.data.dataset import FieldDataset
from surrogates.data.foreign import DEFAULT_COMPONENT_DIMS, ForeignLayout, inspect_foreign
from surrogates.schema import DataSchema

__all__ = ["READER_NAME", "XarrayDataModule", "split_indices"]

READER_NAME = "xarray"
"""``DataSchema.reader["name"]`` of data read by this module (so evaluation can read them again)."""

SPLITS = ("train", "val", "test")


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Disjoint sorted sample indices of ``train``, ``val`` and ``test`` drawn from ``n`` samples.

    A seeded permutation: ``round(test_fraction * n)`` samples go to ``test``, ``round(val_fraction * n)``
    to ``val``, the rest to ``train``; the same ``(n, fractions, seed)`` always gives the same split.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    order = np.random.default_rng(int(seed)).permutation(n)
    n_test, n_val = int(round(test_fraction * n)), int(round(val_fraction * n))
    if n - n_test - n_val < 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training sample of {n}"
        )
    return {
        "test": np.sort(order[:n_test]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


class XarrayDataModule(FieldDataModule):
    """Loaders of NetCDF-4/HDF5 files written by anything (xarray, netCDF4, h5netcdf), given names.

    Parameters
    ----------
    inputs, targets
        Variable names stacked as channels. A vector or tensor field stored with a trailing component
        dim (``component_dims``) is named by component: ``velocity_x``, ``velocity_y`` (the component
        coordinate's values) or ``velocity_0``, ``velocity_1``.
    path
        One file with every sample, split by the fractions.
    train, val, test
        Files of each split instead of ``path`` (``val`` and ``test`` may be omitted).
    sample_dim, time_dim, component_dims
        The file's names of its sample dim, time dim and component dims.
    val_fraction, test_fraction, split_seed
        How ``path`` is split (ignored with ``train``).
    **kwargs
        As for :class:`~surrogates.data.datamodule.FieldDataModule` (``batch_size``, ``input_time`` ...).
    """

    def __init__(
        self,
        inputs: Sequence[str],
        targets: Sequence[str],
        path: str | Path | None = None,
        train: str | Path | None = None,
        val: str | Path | None = None,
        test: str | Path | None = None,
        sample_dim: str = "sample",
        time_dim: str = "time",
        component_dims: Sequence[str] = DEFAULT_COMPONENT_DIMS,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        **kwargs: Any,
    ):
        if (path is None) == (train is None):
            raise ValueError("give data.path (one file, split by fractions) or data.train (with optional val, test)")
        super().__init__(path if path is not None else train, inputs, targets, **kwargs)
        self.path = None if path is None else Path(str(path))
        self.files = {name: Path(str(f)) for name, f in (("train", train), ("val", val), ("test", test)) if f is not None}
        self.layout = ForeignLayout(str(sample_dim), str(time_dim), tuple(str(d) for d in component_dims))
        self.val_fraction, self.test_fraction, self.split_seed = float(val_fraction), float(test_fraction), int(split_seed)
        self._indices: dict[str, np.ndarray] | None = None

    # -- splits -----------------------------------------------------------------------------------
    def _split_indices(self) -> dict[str, np.ndarray]:
        if self._indices is None:
            n = inspect_foreign(self.path, self.layout, check_finite=False).n_samples
            self._indices = split_indices(n, self.val_fraction, self.test_fraction, self.split_seed)
        return self._indices

    def _has_split(self, split: str) -> bool:
        if self.path is None:
            return split in self.files
        return bool(self._split_indices()[split].size)

    def _load(self, split: str) -> FieldDataset:
        if split not in self.datasets:
            if not self._has_split(split):
                given = "its fraction is 0" if self.path is not None else f"no data.{split} file was given"
                raise FileNotFoundError(f"no {split!r} split: {given}")
            files = [self.path] if self.path is not None else [self.files[split]]
            indices = self._split_indices()[split] if self.path is not None else None
            self.datasets[split] = FieldDataset(
                files, self.inputs, self.targets, input_time=self.input_time, target_time=self.target_time,
                check_finite=self.check_finite, layout=self.layout, indices=indices,
                n_steps_input=self.n_steps_input, n_steps_output=self.n_steps_output,
            )
            self._take_names(self.datasets[split])
        return self.datasets[split]

    def _reference(self) -> FieldDataset:
        return next(iter(self.datasets.values()), None) or self._load("train")

    # -- description ------------------------------------------------------------------------------
    def reader(self) -> dict[str, Any]:
        """How to read these data again (``DataSchema.reader``): names, dims, files and the split."""
        return {
            "name": READER_NAME,
            **self.layout.to_dict(),
            "files": {name: str(f) for name, f in self.files.items()},
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }

    def data_schema(self) -> DataSchema:
        """:meth:`FieldDataModule.data_schema` with the :meth:`reader`; ``source`` is the file (or the train file)."""
        return replace(super().data_schema(), reader=self.reader())

    @classmethod
    def from_schema(cls, schema: DataSchema, source: str | Path | None = None, **kwargs: Any) -> "XarrayDataModule":
        """The data module a checkpoint's schema was made by, for evaluation: the same variables, dims and split.

        ``source`` replaces the recorded file (``path``); files per split are taken as recorded.
        """
        reader = dict(schema.reader or {})
        if reader.get("name") != READER_NAME:
            raise ValueError(f"the schema was not made by data=xarray (reader {reader.get('name')!r})")
        files = dict(reader.get("files") or {})
        path = None if files else (source or schema.source)
        window = schema.window or {}
        if window:
            kwargs = {"n_steps_input": window["n_steps_input"], "n_steps_output": window["n_steps_output"], **kwargs}
        return cls(
            list(window.get("inputs") or schema.inputs), list(window.get("targets") or schema.targets), path=path,
            **({} if path else files),
            sample_dim=reader.get("sample_dim", "sample"), time_dim=reader.get("time_dim", "time"),
            component_dims=reader.get("component_dims", DEFAULT_COMPONENT_DIMS),
            val_fraction=reader.get("val_fraction", 0.1), test_fraction=reader.get("test_fraction", 0.1),
            split_seed=reader.get("split_seed", 0), input_time=schema.input_time, target_time=schema.target_time,
            **kwargs,
        )
