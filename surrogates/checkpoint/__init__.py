"""The one module through which every model file is written and read.

A checkpoint is self-describing: weights, and typed metadata (:class:`CheckpointMetadata`) with a format
version, the kind of model, the model's *registered name* and constructor arguments as plain data,
data schema, training metrics and the package version; the normalization statistics are buffers of the saved
model, in the ``state_dict``. Names select from the package's
allowlists (:mod:`surrogates.checkpoint.registry`); nothing named in a file is ever imported or called.
See ``docs/checkpoints.md``.
"""

from surrogates.checkpoint.archive import load_torch_file
from surrogates.checkpoint.building import build_model, build_predictor, construct
from surrogates.checkpoint.io import STATE_PREFIX, Checkpoint, read_checkpoint, write_checkpoint
from surrogates.checkpoint.metadata import (
    FORMAT_VERSION, KINDS, METADATA_KEY, MODEL_PREFIX, CheckpointMetadata, ClassSpec, Statistics, migrate_checkpoint,
    migrate_v1, migrate_v2,
)
from surrogates.checkpoint.plain import NotPlainData, check_plain, to_plain
from surrogates.checkpoint.registry import model_class, model_name, register_model, registered_models
from surrogates.checkpoint.state_checks import check_state, loadable_dtype
from surrogates.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION", "KINDS", "METADATA_KEY", "MODEL_PREFIX", "STATE_PREFIX", "Checkpoint", "CheckpointError",
    "CheckpointMetadata", "ClassSpec", "NotPlainData", "Statistics", "build_model", "build_predictor", "check_plain", "check_state",
    "construct", "load_torch_file", "loadable_dtype", "migrate_checkpoint", "migrate_v1", "migrate_v2", "model_class", "model_name", "read_checkpoint", "register_model", "registered_models",
    "to_plain", "write_checkpoint",
]
