"""The one module through which every model file is written and read.

A checkpoint is self-describing: weights, and typed metadata (:class:`CheckpointMetadata`) with a format
version, the kind of model, the model's *registered name* and constructor arguments as plain data,
normalization, data schema, training metrics and the package version. Names select from the package's
allowlists (:mod:`surrogates.checkpoint.registry`); nothing named in a file is ever imported or called.
See ``docs/checkpoints.md``.
"""

from surrogates.checkpoint.io import STATE_PREFIX, Checkpoint, build_model, construct, load_torch_file, read_checkpoint, write_checkpoint
from surrogates.checkpoint.metadata import FORMAT_VERSION, KINDS, METADATA_KEY, CheckpointMetadata, ClassSpec, Statistics, migrate_v1
from surrogates.checkpoint.plain import NotPlainData, check_plain, to_plain
from surrogates.checkpoint.registry import model_class, model_name, register_model, registered_models
from surrogates.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION", "KINDS", "METADATA_KEY", "STATE_PREFIX", "Checkpoint", "CheckpointError", "CheckpointMetadata",
    "ClassSpec", "NotPlainData", "Statistics", "build_model", "check_plain", "construct", "load_torch_file",
    "migrate_v1", "model_class", "model_name", "read_checkpoint", "register_model", "registered_models",
    "to_plain", "write_checkpoint",
]
