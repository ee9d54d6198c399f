"""Datasets on disk and in training: one HDF5/NetCDF-4 file format, read by h5py and by xarray.

- :mod:`~surrogates.data.schema`: the format and a validating reader (:func:`inspect_file`).
- :mod:`~surrogates.data.writer`: atomic writer (:func:`write_dataset`).
- :mod:`~surrogates.data.temporaries`: names of files still being written (:func:`temporary_path`), and cleanup
  of those left by dead processes; :mod:`~surrogates.data.publishing`: the renames that publish a dataset's files
  together.
- :mod:`~surrogates.data.shards`: split and shard file names (:func:`shard_path`, :func:`split_files`).
- :mod:`~surrogates.data.xarray_view`: a split as one ``xarray.Dataset`` (:func:`open_split`).
- :mod:`~surrogates.data.dataset`, :mod:`~surrogates.data.datamodule`: torch / Lightning loading
  (:mod:`~surrogates.data.base`: what the DataModules of split folders share).
- :mod:`~surrogates.data.normalization`: per-channel :class:`Normalizer` and its statistics.

The names below are imported on first access (module ``__getattr__``), so that importing one
submodule, e.g. :mod:`~surrogates.data.normalization` for inference, does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "FieldDataModule": "datamodule",
    "FieldDataset": "dataset",
    "Normalizer": "normalization",
    "channel_statistics": "normalization",
    "REQUIRED_ATTRS": "schema",
    "SCHEMA_VERSION": "schema",
    "DatasetFileError": "schema",
    "FileInfo": "schema",
    "VariableInfo": "schema",
    "inspect_file": "schema",
    "require_variables": "schema",
    "has_split": "shards",
    "is_complete": "shards",
    "shard_path": "shards",
    "split_files": "shards",
    "temporary_path": "temporaries",
    "write_dataset": "writer",
    "open_split": "xarray_view",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from surrogates.data.datamodule import FieldDataModule
    from surrogates.data.dataset import FieldDataset
    from surrogates.data.normalization import Normalizer, channel_statistics
    from surrogates.data.schema import (
        REQUIRED_ATTRS,
        SCHEMA_VERSION,
        DatasetFileError,
        FileInfo,
        VariableInfo,
        inspect_file,
        require_variables,
    )
    from surrogates.data.shards import has_split, is_complete, shard_path, split_files
    from surrogates.data.temporaries import temporary_path
    from surrogates.data.writer import write_dataset
    from surrogates.data.xarray_view import open_split


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'surrogates.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"surrogates.data.{module}"), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
