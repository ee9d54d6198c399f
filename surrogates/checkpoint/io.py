"""Reading and writing model files, and rebuilding the model they describe.

One path for every reader (``Surrogate``, ``RolloutSurrogate``, the service, ``surrogates-evaluate``,
resuming with ``ckpt_path=``, physics-informed solutions, learned preconditioners):

1. :func:`read_checkpoint` checks the zip archive (stored members, sizes, CRC-32s), loads the file with
   ``torch.load(weights_only=True)`` (tensors and plain data only: no pickled code runs), migrates older
   formats (:func:`migrate_checkpoint`) and checks its metadata (:class:`CheckpointMetadata`);
2. :func:`build_model` looks the model's name up in the registry, checks the constructor arguments
   against the class's signature (all of them given), builds it on the ``meta`` device first (no tensor
   memory; its registrations counted against the file's size) and compares every entry's name, shape
   and dtype with the file's before allocating, then loads the weights and checks that they are finite;
   :meth:`Checkpoint.build_predictor` does the same for the saved model of the ``operator`` and
   ``rollout`` kinds: the network inside its normalization wrapper (a fixed package class chosen by
   the kind), statistics included.

State layout (format 3): the saved model of an ``operator`` or ``rollout`` checkpoint under ``model.``
(``model.net.*``, ``model.input_normalizer.mean`` ...), a weight average of the network under
``ema.module.``; the network of the other kinds (pointwise, preconditioner) under ``net.``.

Every failure raises :class:`~surrogates.errors.CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import inspect
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from surrogates.checkpoint import registry
from surrogates.checkpoint.metadata import (
    MODEL_PREFIX, METADATA_KEY, CheckpointMetadata, ClassSpec, migrate_checkpoint, with_added_arguments,
)
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

REGISTRATIONS_PER_ENTRY = 4
"""Parameters, buffers and submodules the ``meta`` skeleton may register per entry of the file's state, plus
:data:`REGISTRATION_SLACK`: the package's models register at most two per entry (submodules without
weights: activations, containers), so a file whose arguments ask for more (``n_layers=10**30``) is refused
while the skeleton is being built, before its size depends on the file's numbers."""

REGISTRATION_SLACK = 256

DERIVED_ELEMENTS_SLACK = 2**20
"""Elements the non-persistent buffers (values derived from the arguments: noise schedules, index tables)
may hold beyond as many as the file's tensors: a model whose derived buffers exceed both is refused before
it is allocated (4 MiB of float32 whatever the file; PDE-Refiner's ``K + 1`` noise levels are a few)."""


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
            _compare_state(self.network_state(EMA_PREFIX), self.network_state(), self.path)

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


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first bytes of an HDF5 file (at offset 0, as h5py and netCDF write them)."""


def load_torch_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU, as a dict; :class:`CheckpointError` on any failure.

    ``weights_only`` refuses every pickled global that is not a tensor or plain container, so a
    crafted file (``__reduce__`` payloads, omegaconf objects, modules) is refused before anything runs.
    """
    path = Path(path)
    if path.is_dir():  # ckpt=<run>/checkpoints: name the files it holds
        found = sorted(p.name for p in path.glob("*.ckpt"))[:8]
        raise CheckpointError(path, f"is a folder, not a checkpoint file; it holds {found or 'no .ckpt files'}")
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    _check_archive(path)
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated, foreign or unsafe files
        reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            path, f"cannot read checkpoint: not a weights-only torch file (truncated, foreign, or holding objects "
            f"other than tensors and plain data): {reason}"
        ) from error
    if not isinstance(contents, dict):
        raise CheckpointError(path, f"holds a {type(contents).__name__}, not a checkpoint dict")
    return contents


def _check_archive(path: Path) -> None:
    """Refuse, before ``torch.load`` reads anything, what torch's reader would take on trust.

    - A file that is not a zip archive: torch's legacy format (before torch 1.6, or
      ``_use_new_zipfile_serialization=False``) carries no checksum, so a changed byte would load as
      other weights. Every file this package writes is a zip archive.
    - A compressed member: torch writes its members stored (uncompressed); a compressed one can inflate
      to far more than the file holds (a zip bomb), so it is refused before anything is inflated.
    - Members whose declared sizes add up to more than the file's size on disk.
    - A CRC-32 mismatch in any member (torch's reader does not check them).
    """
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:  # a dataset split, say: not torch's legacy format
                raise CheckpointError(path, "cannot read checkpoint: an HDF5 file (a dataset split?), not a torch checkpoint")
        raise CheckpointError(
            path, "cannot read checkpoint: not a zip archive (torch's legacy format, written before torch 1.6 or with "
            "_use_new_zipfile_serialization=False, has no checksums and is refused: load it with torch and save it again)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive.infolist(), path)
            damaged = archive.testzip()
    except CheckpointError:
        raise
    except Exception as error:  # zipfile raises BadZipFile, ValueError, EOFError, ... for damaged archives
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(path, f"cannot read checkpoint: damaged file ({reason})") from error
    if damaged is not None:
        raise CheckpointError(path, f"cannot read checkpoint: damaged file (CRC-32 mismatch in {damaged!r})")


def _check_members(members: list[zipfile.ZipInfo], path: Path) -> None:
    """Stored members only, declaring no more bytes than the file has (checked from the central directory)."""
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                path, f"cannot read checkpoint: member {member.filename!r} is compressed (torch stores its members "
                "uncompressed; a compressed member could inflate to any size)"
            )
    declared, size = sum(member.file_size for member in members), path.stat().st_size
    if declared > size:
        raise CheckpointError(
            path, f"cannot read checkpoint: its members declare {declared} bytes, more than the file's {size}"
        )


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


def construct(cls: type, kwargs: dict[str, Any], what: str, path: Any = None, **build: Any) -> Any:
    """``cls(**kwargs)`` after checking the arguments against the signature; :class:`CheckpointError` on failure.

    Every named parameter of the signature must be given (in ``kwargs``, or in ``build`` by the caller): the
    writers record them all (``init_config()``, a problem's ``config()``), and a default standing in for a
    missing one would rebuild another model than the one trained (``activation="gelu"`` for ``"tanh"``).
    Arguments added to a class after files of it were written are filled in by the metadata reader
    (:data:`~surrogates.checkpoint.metadata.ADDED_ARGUMENTS`), with the value those files were built with.
    """
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs, **build)
    except TypeError as error:
        raise CheckpointError(path, f"the {what} arguments do not fit {cls.__name__}: {error}") from None
    missing = _missing_arguments(signature, {**kwargs, **build})
    if missing:
        raise CheckpointError(
            path, f"the {what} arguments lack {missing} of {cls.__name__} (a file records every constructor argument; "
            "a default would stand in for the value the model was built with)"
        )
    try:
        return cls(**kwargs, **build)
    except CheckpointError:  # the skeleton's registration limit (_registration_limit) names the file already
        raise
    except Exception as error:  # a constructor refusing its arguments (ValueError, TypeError, ...)
        raise CheckpointError(path, f"cannot build {cls.__name__} from the stored arguments: {type(error).__name__}: {error}") from None


def _missing_arguments(signature: inspect.Signature, given: dict[str, Any]) -> list[str]:
    """Named parameters of ``signature`` (not ``*args`` / ``**kwargs``) absent from ``given``."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [name for name, parameter in signature.parameters.items() if parameter.kind in named and name not in given]


def build_model(
    spec: ClassSpec | dict[str, Any], state: dict[str, torch.Tensor] | None = None, path: Any = None,
    kind: str = "operator",
) -> torch.nn.Module:
    """The registered model ``spec.name`` built from ``spec.kwargs``, with ``state`` loaded when given.

    ``spec`` is a :class:`ClassSpec` or the dict ``model.init_config()`` returns; ``kind`` picks the
    allowlist (:func:`~surrogates.checkpoint.registry.network_class`).

    The model is first built on the ``meta`` device (no tensor memory; refused once it registers more
    parameters, buffers and submodules than :data:`REGISTRATIONS_PER_ENTRY` per entry of ``state``), every
    entry of its state dict is compared with ``state`` (names, shapes, dtypes) and its non-persistent
    buffers are totalled (:data:`DERIVED_ELEMENTS_SLACK`): a mismatch is reported by name before anything
    is allocated. After loading, every floating parameter and buffer must be finite.

    Raises
    ------
    CheckpointError
        Unknown name, arguments missing or that do not fit the constructor (or its range checks), a model
        out of proportion to the file, weights that do not match or are not finite.
    """
    if not isinstance(spec, ClassSpec):
        spec = ClassSpec.from_dict(spec, "model", path)
    spec = with_added_arguments(spec, kind)  # a spec read from an older file (CheckpointMetadata fills them too)
    cls = registry.network_class(kind, spec.name, path)
    return _build(lambda: construct(cls, spec.kwargs, "model", path), state, path, cls.__name__)


def build_predictor(
    spec: ClassSpec | dict[str, Any], state: dict[str, torch.Tensor], path: Any = None, kind: str = "operator",
) -> torch.nn.Module:
    """The saved model of an ``operator`` or ``rollout`` file: the registered network ``spec.name`` inside
    the normalization wrapper of ``kind`` (:func:`~surrogates.checkpoint.registry.predictor_class`, a fixed
    package class), with ``state`` (the wrapper's ``state_dict``: ``net.*`` and the statistics) loaded.

    As :func:`build_model`: built on the ``meta`` device first and every entry (weights and statistics)
    compared by name, shape and dtype before anything is allocated, every parameter and buffer finite
    after loading; then the statistics are checked (non-negative spreads, non-zero parameter scales).

    Raises
    ------
    CheckpointError
        A kind without a wrapper, an unknown name, arguments that do not fit, entries that do not match,
        unusable statistics.
    """
    if not isinstance(spec, ClassSpec):
        spec = ClassSpec.from_dict(spec, "model", path)
    spec = with_added_arguments(spec, kind)  # a spec read from an older file (CheckpointMetadata fills them too)
    wrapper = registry.predictor_class(kind, path)
    cls = registry.network_class(kind, spec.name, path)

    def make() -> torch.nn.Module:
        net = construct(cls, spec.kwargs, "model", path)
        try:
            return wrapper(net)
        except Exception as error:  # a network without the channel counts the wrapper needs
            raise CheckpointError(path, f"cannot wrap {cls.__name__} in {wrapper.__name__}: {type(error).__name__}: {error}") from None

    predictor = _build(make, state, path, f"{wrapper.__name__}({cls.__name__})")
    problems = predictor.problems()
    if problems:
        raise CheckpointError(path, "; ".join(problems))
    return predictor


def _build(make: Any, state: dict[str, torch.Tensor] | None, path: Any, what: str) -> torch.nn.Module:
    """``make()`` after checking on the ``meta`` device that ``state`` fits it, then ``state`` loaded (strict)
    and every floating parameter and buffer checked to be finite."""
    if state is not None:
        skeleton = _skeleton(make, len(state), path)
        _compare_state(skeleton.state_dict(), state, path)
        _check_derived_buffers(skeleton, state, path)
        del skeleton
    model = make()
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:  # what the comparison does not see (e.g. overlapping memory)
            raise CheckpointError(path, f"weights do not load into {what}: {error}") from None
        _check_finite(model, path)
    return model


def _skeleton(make: Callable[[], torch.nn.Module], entries: int, path: Any) -> torch.nn.Module:
    """``make()`` on the ``meta`` device (no memory for tensors), refused once it registers more parameters,
    buffers and submodules than a file of ``entries`` tensors can need."""
    limit = REGISTRATIONS_PER_ENTRY * entries + REGISTRATION_SLACK
    with _registration_limit(limit, entries, path), torch.device("meta"):
        return make()


@dataclass
class _Limit:
    """The registration budget of one skeleton build (see :func:`_registration_limit`)."""

    limit: int
    entries: int
    path: Any
    count: int = 0


_ACTIVE = threading.local()
"""``_ACTIVE.limit``: the :class:`_Limit` of the skeleton this thread is building, or absent."""

_HOOKS_LOCK = threading.Lock()
_HOOKS: list[Any] = []


def _count_registration(*_: Any) -> None:
    """torch's registration hook: counts against the calling thread's :class:`_Limit`, if it has one."""
    limit = getattr(_ACTIVE, "limit", None)
    if limit is None:
        return
    limit.count += 1
    if limit.count > limit.limit:
        raise CheckpointError(
            limit.path, f"the stored arguments build a model of more than {limit.limit} parameters, buffers and "
            f"submodules for a file of {limit.entries} tensors (a layer count out of proportion to the weights)"
        )


def _install_hooks() -> None:
    """Register :func:`_count_registration` as torch's global parameter, buffer and submodule registration
    hook, once per process."""
    with _HOOKS_LOCK:
        if _HOOKS:
            return
        module = torch.nn.modules.module
        _HOOKS.extend([
            module.register_module_parameter_registration_hook(_count_registration),
            module.register_module_buffer_registration_hook(_count_registration),
            module.register_module_module_registration_hook(_count_registration),
        ])


@contextmanager
def _registration_limit(limit: int, entries: int, path: Any) -> Iterator[None]:
    """Count the parameters, buffers and submodules this thread registers inside the block; raise
    :class:`CheckpointError` at registration ``limit + 1``. The count ends with the block (a ``finally``).

    torch's registration hooks are global (torch has none per thread). So the counting hook is installed once
    and stays, and what it counts against is thread-local: it counts only the registrations of a thread
    inside this block, and for every other registration (another thread's model, this thread's outside the
    block) it returns at once, costing one Python call. Adding and removing the hooks around every build
    instead would change torch's hook dicts while another thread may be iterating over them in its own
    registrations (``RuntimeError: dictionary changed size during iteration`` in a thread that merely builds
    a module: the service's model threads, a second loader); installed once, they never change again.
    """
    _install_hooks()
    previous = getattr(_ACTIVE, "limit", None)
    _ACTIVE.limit = _Limit(limit, entries, path)
    try:
        yield
    finally:
        _ACTIVE.limit = previous


def _check_derived_buffers(skeleton: torch.nn.Module, state: dict[str, torch.Tensor], path: Any) -> None:
    """Refuse a skeleton whose non-persistent buffers (not in the file: derived from the arguments) would hold
    more elements than the file's tensors and :data:`DERIVED_ELEMENTS_SLACK` (checked before allocating)."""
    stored = sum(value.numel() for value in state.values())
    persistent = set(skeleton.state_dict())
    derived = {name: buffer.numel() for name, buffer in skeleton.named_buffers() if name not in persistent}
    total = sum(derived.values())
    if total > max(stored, DERIVED_ELEMENTS_SLACK):
        largest = max(derived, key=derived.get)
        raise CheckpointError(
            path, f"the stored arguments derive buffers of {total} elements (largest {largest!r}: {derived[largest]}) "
            f"from a file of {stored}"
        )


def _compare_state(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor], path: Any) -> None:
    """Every entry of ``expected`` (the model's ``state_dict``) is in ``stored`` with the same shape and dtype,
    as a dense tensor, and ``stored`` holds nothing else."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            path, f"weights do not match the model: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, value in expected.items():
        _compare_entry(key, value, stored[key], path)


def _compare_entry(key: str, expected: torch.Tensor, stored: torch.Tensor, path: Any) -> None:
    if stored.layout != torch.strided or stored.is_quantized or stored.is_meta:
        form = "a meta" if stored.is_meta else "a quantized" if stored.is_quantized else f"a {stored.layout}"
        raise CheckpointError(path, f"weight {key!r} is stored as {form} tensor, not a dense one")
    if tuple(expected.shape) != tuple(stored.shape):
        raise CheckpointError(
            path, f"weight {key!r} has shape {tuple(stored.shape)} in the file but {tuple(expected.shape)} in the model"
        )
    # load_state_dict would cast silently (complex to real drops the imaginary part, uint8 255 becomes 255.0, a
    # bool becomes 1.0). One real floating dtype for another is what a run of another trainer.precision stores
    # (16-true: float16, bf16-true: bfloat16, 64-true: float64): those values load, rounded to the model's dtype
    if not loadable_dtype(stored.dtype, expected.dtype):
        raise CheckpointError(path, f"weight {key!r} is {stored.dtype} in the file but {expected.dtype} in the model")


def loadable_dtype(stored: torch.dtype, expected: torch.dtype) -> bool:
    """Whether values stored as ``stored`` load into a tensor of ``expected``: the same dtype, or two real
    floating ones (a run of another ``trainer.precision``), never a cast that changes what a value means."""
    real = (stored.is_floating_point and not stored.is_complex) and (expected.is_floating_point and not expected.is_complex)
    return stored == expected or real


def check_state(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor], path: Any = None) -> None:
    """Raise :class:`CheckpointError` unless ``stored`` has exactly the entries of ``expected`` (a module's
    ``state_dict``), each dense, of the same shape and dtype, and finite where floating: the checks the
    readers make before and after loading weights, for a ``state_dict`` that another loader (Lightning,
    when a run resumes) will load."""
    _compare_state(expected, stored, path)
    for key, value in stored.items():
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            raise CheckpointError(path, f"weight {key!r} holds NaN or infinite values")


def _check_finite(model: torch.nn.Module, path: Any) -> None:
    """Refuse a model whose floating parameters or buffers hold NaN or infinite values (naming the first)."""
    entries = [("parameter", name, value) for name, value in model.named_parameters()]
    entries += [("buffer", name, value) for name, value in model.named_buffers()]
    for what, name, value in entries:
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            raise CheckpointError(path, f"{what} {name!r} holds NaN or infinite values")


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
