"""Datasets on disk and in training: one HDF5/NetCDF-4 file format, read by h5py and by xarray.

- :mod:`~surrogates.data.schema`: the format and a validating reader (:func:`inspect_file`).
- :mod:`~surrogates.data.writer`: atomic writer (:func:`write_dataset`).
- :mod:`~surrogates.data.shards`: split and shard file names (:func:`shard_path`, :func:`split_files`).
- :mod:`~surrogates.data.xarray_view`: a split as one ``xarray.Dataset`` (:func:`open_split`).
- :mod:`~surrogates.data.dataset`, :mod:`~surrogates.data.datamodule`: torch / Lightning loading.
- :mod:`~surrogates.data.normalization`: per-channel :class:`Normalizer` and its statistics.
"""

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
from surrogates.data.writer import temporary_path, write_dataset
from surrogates.data.xarray_view import open_split

__all__ = [
    "REQUIRED_ATTRS",
    "SCHEMA_VERSION",
    "DatasetFileError",
    "FieldDataModule",
    "FieldDataset",
    "FileInfo",
    "Normalizer",
    "VariableInfo",
    "channel_statistics",
    "has_split",
    "inspect_file",
    "is_complete",
    "open_split",
    "require_variables",
    "shard_path",
    "split_files",
    "temporary_path",
    "write_dataset",
]
