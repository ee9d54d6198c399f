"""Reading and writing model files, and rebuilding the model they describe.

One path for every reader (``Surrogate``, ``RolloutSurrogate``, the service, ``surrogates-evaluate``,
resuming with ``ckpt_path=``, physics-informed solutions, learned preconditioners):

1. :func:`read_checkpoint` checks the zip archive (stored members, sizes, CRC-32s), loads the file with
   ``torch.load(weights_only=True)`` (tensors and plain data only: no pickled code runs;
   :mod:`~surrogates.checkpoint.archive`), migrates older formats (:func:`migrate_checkpoint`) and checks its
   metadata (:class:`CheckpointMetadata`);
2. :func:`~surrogates.checkpoint.building.build_model` looks the model's name up in the registry, checks the constructor arguments
   against the class's signature (all of them given), builds it on the ``meta`` device first (no tensor
   memory; its registrations counted against the file's size) and compares every entry's name, shape
   and dtype with the file's before allocating, then loads the weights and checks that they are finite;
   :meth:`Checkpoint.build_predictor` does the same for the saved model of the ``operator`` and
   ``rollout`` kinds: the network inside its normalization wrapper (a fixed package class chosen by
   the kind), statistics included (:mod:`~surrogates.checkpoint.building`, with the skeleton's budget in
   :mod:`~surrogates.checkpoint.registration_limit` and the comparison of entries in
   :mod:`~surrogates.checkpoint.state_checks`).

State layout (format 3): the saved model of an ``operator`` or ``rollout`` checkpoint under ``model.``
(``model.net.*``, ``model.input_normalizer.mean`` ...), a weight average of the network under
``ema.module.``; the network of the other kinds (pointwise, preconditioner) under ``net.``.

Every failure raises :class:`~surrogates.errors.CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from surrogates.checkpoint import registry
from surrogates.checkpoint.archive import load_torch_file
from surrogates.checkpoint.building import build_model, build_predictor, construct
from surrogates.checkpoint.metadata import MODEL_PREFIX, METADATA_KEY, CheckpointMetadata, migrate_checkpoint
from surrogates.checkpoint.state_checks import check_state, compare_state
from surrogates.errors import CheckpointError

__all__ = [
    "Checkpoint", "build_model", "build_predictor", "check_state", "construct", "load_torch_file", "read_checkpoint",
    "write_checkpoint",
]

STATE_PREFIX = "net."
"""Prefix of the network's weights in the ``state_dict`` of the kinds without a normalization wrapper
(pointwise, preconditioner: the task holds the network as ``net``)."""

EMA_PREFIX = "ema.module."
"""Prefix of the weight average of the network a task may keep (``torch.optim.swa_utils.AveragedModel`` as ``ema``)."""

EMA_COUNT = "ema.n_averaged"
"""The weight average's update count (beside :data:`EMA_PREFIX`; used by resuming only)."""

WRAPPED_KINDS = ("operator", "rollout")
"""Kinds whose saved model is a normalization wrapper (:mod:`surrogates.models.normalized`) under :data:`MODEL_PREFIX`."""


@dataclass
class Checkpoint:
    """A model file read and checked by :func:`read_checkpoint`.

    Attributes
    ----------
    path : Path
        The file.
    metadata : CheckpointMetadata
        Its checked metadata (formats 1 and 2 migrated).
    state_dict : dict[str, torch.Tensor]
        Every tensor of the file's ``state_dict``, in the current layout (older formats migrated).
    contents : dict
        The whole dict ``torch.load`` returned, migrated (Lightning's epoch, callbacks, ...).
    """

    path: Path
    metadata: CheckpointMetadata
    state_dict: dict[str, torch.Tensor]
    contents: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.metadata.kind

    @property
    def network_prefix(self) -> str:
        """Where the trained network's weights live: ``model.net.`` (operator, rollout) or ``net.`` (other kinds)."""
        return MODEL_PREFIX + STATE_PREFIX if self.kind in WRAPPED_KINDS else STATE_PREFIX

    def network_state(self, prefix: str | None = None) -> dict[str, torch.Tensor]:
        """The network's weights: entries of the state dict under ``prefix`` (default :attr:`network_prefix`), without it."""
        prefix = self.network_prefix if prefix is None else prefix
        return {key[len(prefix):]: value for key, value in self.state_dict.items() if key.startswith(prefix)}

    @property
    def inference_prefix(self) -> str:
        """Where the network weights used for predictions live: a task's weight average (``ema.module.``)
        when it saved one, else the trained network (:attr:`network_prefix`)."""
        return EMA_PREFIX if any(key.startswith(EMA_PREFIX) for key in self.state_dict) else self.network_prefix

    def predictor_state(self) -> dict[str, torch.Tensor]:
        """The saved model's ``state_dict`` (entries under ``model.``) with the network weights of
        :attr:`inference_prefix` (the weight average when there is one)."""
        state = {
            key[len(MODEL_PREFIX):]: value for key, value in self.state_dict.items()
            if key.startswith(MODEL_PREFIX) and not key.startswith(MODEL_PREFIX + STATE_PREFIX)
        }
        state.update({STATE_PREFIX + key: value for key, value in self.network_state(self.inference_prefix).items()})
        return state

    def unknown_entries(self) -> list[str]:
        """Entries of the ``state_dict`` outside the layout of the file's kind (the saved model or network, a
        weight average and its count): no reader loads them, so they are refused rather than carried."""
        prefixes = (MODEL_PREFIX if self.kind in WRAPPED_KINDS else STATE_PREFIX, EMA_PREFIX)
        return sorted(key for key in self.state_dict if not key.startswith(prefixes) and key != EMA_COUNT)

    def check_entries(self) -> None:
        """Raise :class:`CheckpointError` when the ``state_dict`` holds :meth:`unknown_entries`, or a weight
        average whose entries do not match the trained network's (names, shapes, dtypes)."""
        unknown = self.unknown_entries()
        if unknown:
            raise CheckpointError(
                self.path, f"the state_dict holds entries no reader uses: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
            )
        if self.inference_prefix == EMA_PREFIX:  # the trained network is not loaded then: it must still match
            compare_state(self.network_state(EMA_PREFIX), self.network_state(), self.path)

    def build_model(self, prefix: str | None = None) -> torch.nn.Module:
        """The network alone with its weights (default: :attr:`inference_prefix`), in eval mode (see :func:`build_model`).

        For the operator and rollout kinds this is the network *without* its normalization; predictions
        in physical units come from :meth:`build_predictor`.
        """
        self.check_entries()
        state = self.network_state(self.inference_prefix if prefix is None else prefix)
        return build_model(self.metadata.model, state, self.path, self.kind).eval()

    def build_predictor(self) -> torch.nn.Module:
        """The saved model of an operator or rollout checkpoint, in eval mode: the network (the weight
        average when there is one) inside its normalization wrapper, statistics loaded from the
        ``state_dict`` (see :func:`build_predictor`).

        Raises
        ------
        CheckpointError
            Another kind, weights or statistics that do not match, statistics that are not usable, entries of the
            ``state_dict`` no reader uses (:meth:`check_entries`).
        """
        self.check_entries()
        return build_predictor(self.metadata.model, self.predictor_state(), self.path, self.kind).eval()

    def build_problem(self) -> Any:
        """The physics problem of a pointwise checkpoint (None when it records none)."""
        spec = self.metadata.problem
        if spec is None:
            return None
        cls = registry.physics_problem_class(spec.name, self.path)
        return construct(cls, spec.kwargs, "problem", self.path)

    def training_summary(self) -> dict[str, Any]:
        """Epoch, step, the metrics at save time and the best monitored metric (plain numbers)."""
        summary = dict(self.metadata.training)
        for key in ("epoch", "global_step"):
            value = self.contents.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                summary[key] = value
        callbacks = self.contents.get("callbacks")
        for key, state in (callbacks.items() if isinstance(callbacks, dict) else []):
            if not (str(key).startswith("ModelCheckpoint") and isinstance(state, dict)):
                continue
            monitor, score = state.get("monitor"), state.get("best_model_score")
            if isinstance(monitor, str) and score is not None:
                try:
                    summary.setdefault("best", {})[monitor] = float(score)
                except (TypeError, ValueError, RuntimeError):
                    pass
        return summary


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a training checkpoint (``.ckpt``) written by a surrogates task or :func:`write_checkpoint`.

    Raises
    ------
    CheckpointError
        Missing or unreadable file, no surrogates metadata, invalid metadata (see
        :meth:`CheckpointMetadata.from_dict`), a ``state_dict`` that is not a dict of tensors.
    """
    path = Path(path)
    contents = load_torch_file(path)
    if METADATA_KEY not in contents and set(contents) == set(_PRECONDITIONER_V1):
        contents = _migrate_preconditioner_v1(contents, path)
    if not contents.get(METADATA_KEY):
        raise CheckpointError(path, f"not a surrogates checkpoint (no '{METADATA_KEY}' metadata)")
    contents = migrate_checkpoint(contents, path)  # formats 1 and 2: metadata and state_dict in the current layout
    metadata = CheckpointMetadata.from_dict(contents[METADATA_KEY], path)
    # Names are checked against the allowlists now (a lookup, nothing built), so every reader refuses alike.
    registry.network_class(metadata.kind, metadata.model.name, path)
    if metadata.problem is not None:
        registry.physics_problem_class(metadata.problem.name, path)
    state = contents.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(path, "'state_dict' must map names to tensors")
    return Checkpoint(path, metadata, state, contents)


def write_checkpoint(
    path: str | Path, metadata: CheckpointMetadata, state: dict[str, torch.Tensor], **extra: Any
) -> Path:
    """Write a checkpoint that :func:`read_checkpoint` reads, outside Lightning (tools, golden files).

    ``state`` is the ``state_dict()`` of what the file saves: for the ``operator`` and ``rollout`` kinds
    the saved model (:class:`~surrogates.models.normalized.NormalizedOperator`,
    :class:`~surrogates.models.normalized.NormalizedStepper`: network and statistics), stored under
    ``model.``; for the other kinds the network, stored under :data:`STATE_PREFIX`; as a task would.
    ``extra`` entries (plain data) are stored beside it. Written to a temporary name and renamed, so an
    interrupted write leaves no file that looks complete.
    """
    path = Path(path)
    prefix = STATE_PREFIX
    if metadata.kind in WRAPPED_KINDS:
        if not any(key.startswith(STATE_PREFIX) for key in state):
            raise ValueError(
                f"a {metadata.kind!r} checkpoint saves the network with its normalization: pass the state_dict of "
                "surrogates.models.normalized.NormalizedOperator / NormalizedStepper, not the network's"
            )
        prefix = MODEL_PREFIX
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = {
        **extra,
        "state_dict": {prefix + key: value.detach().cpu() for key, value in state.items()},
        METADATA_KEY: metadata.to_dict(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(contents, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_PRECONDITIONER_V1 = ("init_kwargs", "state_dict", "metadata")
"""Keys of a learned-preconditioner file of format 1 (before the checkpoint module)."""


def _migrate_preconditioner_v1(contents: dict[str, Any], path: Path) -> dict[str, Any]:
    """A format-1 preconditioner file as a format-2 checkpoint (the one network class it could hold)."""
    state, kwargs, training = contents["state_dict"], contents["init_kwargs"], contents["metadata"]
    if not isinstance(state, dict) or not isinstance(kwargs, dict) or not isinstance(training, dict):
        raise CheckpointError(path, "learned-preconditioner file (format 1) with malformed entries")
    metadata = {
        "format_version": 2, "kind": "preconditioner", "model": {"name": "gnn", "kwargs": kwargs},
        "training": training, "task": "", "package_version": "",
    }
    return {"state_dict": {STATE_PREFIX + str(k): v for k, v in state.items()}, METADATA_KEY: metadata}
