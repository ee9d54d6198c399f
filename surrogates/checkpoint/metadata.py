"""The typed metadata a model file carries: what it holds, how to rebuild it, what data it expects.

Stored in a training checkpoint under the key :data:`METADATA_KEY` as plain data
(:meth:`CheckpointMetadata.to_dict`); read back, checked and migrated by
:meth:`CheckpointMetadata.from_dict`.

Format versions
---------------
1. (unversioned, up to package 0.1.0 before the checkpoint module) ``model`` and ``problem`` named by
   import path (``{"class": "surrogates.models.fno.FNO", "kwargs": ...}``), ``version`` for the package
   version, ``kind`` only for rollout models. Read by :func:`migrate_v1`.
2. ``format_version``, ``kind``, ``model`` / ``problem`` by registered name (``{"name": "fno", "kwargs": ...}``),
   ``package_version``, ``training`` metrics; the normalization statistics as lists (``normalization``,
   ``conditioning.scale``), which the readers used (a task's ``state_dict`` held them a second time, as
   buffers of the task). Read by :func:`migrate_v2`.
3. The statistics live only in the ``state_dict``, as buffers of the saved model
   (:mod:`surrogates.models.normalized`, under ``model.``): no ``normalization``, and ``conditioning``
   holds only the parameters' ``names``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from surrogates.checkpoint.plain import NotPlainData, check_plain, to_plain
from surrogates.errors import CheckpointError
from surrogates.schema import DataSchema, SchemaError

METADATA_KEY = "surrogates"
"""Key of the metadata in a training checkpoint (the rest is Lightning's: ``state_dict``, ``epoch`` ...)."""

FORMAT_VERSION = 3
"""Format written by this version; files of a higher version are refused (written by a newer package)."""

KINDS = ("operator", "rollout", "pointwise", "reduced", "preconditioner")
"""What a file holds: a field-to-field ``operator`` (FNO, MgNO, U-Net, hard-constraint models), a one-step
model for ``rollout`` s (PDE-Refiner, MSE U-Net), a ``pointwise`` coordinate network of one PDE instance
(PIG, PINN), a ``reduced`` basis model (``.rb.h5``), a learned CG ``preconditioner``."""


@dataclass(frozen=True)
class ClassSpec:
    """A registered class and its constructor arguments (plain data).

    Attributes
    ----------
    name : str
        Registered name (:mod:`surrogates.checkpoint.registry`), e.g. ``"fno"``.
    kwargs : dict
        Constructor arguments: numbers, strings, bools, None, lists and dicts of them.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": to_plain(dict(self.kwargs))}

    @classmethod
    def from_dict(cls, value: Any, what: str, path: Any = None) -> "ClassSpec":
        if not isinstance(value, Mapping):
            raise CheckpointError(path, f"'{what}' must be a mapping with 'name' and 'kwargs', got {type(value).__name__}")
        missing = [key for key in ("name", "kwargs") if key not in value]
        if missing:
            raise CheckpointError(path, f"'{what}' lacks {missing}")
        name, kwargs = value["name"], value["kwargs"]
        if not isinstance(name, str) or not name:
            raise CheckpointError(path, f"'{what}.name' must be a non-empty string, got {name!r}")
        if not isinstance(kwargs, dict):
            raise CheckpointError(path, f"'{what}.kwargs' must be a dict, got {type(kwargs).__name__}")
        _check_plain(kwargs, f"{what}.kwargs", path)
        return cls(name, dict(kwargs))


@dataclass(frozen=True)
class Statistics:
    """Per-channel mean and standard deviation of a normalizer (physical units)."""

    mean: list[float]
    std: list[float]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, value: Any, what: str, path: Any = None) -> "Statistics":
        if not isinstance(value, Mapping) or "mean" not in value or "std" not in value:
            raise CheckpointError(path, f"'{what}' must hold 'mean' and 'std' lists")
        mean, std = value["mean"], value["std"]
        for name, values in (("mean", mean), ("std", std)):
            if not isinstance(values, list) or not values or not all(_is_number(v) for v in values):
                raise CheckpointError(path, f"'{what}.{name}' must be a non-empty list of numbers")
            if not all(math.isfinite(v) for v in values):
                raise CheckpointError(path, f"'{what}.{name}' holds NaN or infinite values")
        if len(mean) != len(std):
            raise CheckpointError(path, f"'{what}' has {len(mean)} means but {len(std)} standard deviations")
        if not all(v > 0 for v in std):
            raise CheckpointError(path, f"'{what}.std' must be positive")
        return cls([float(v) for v in mean], [float(v) for v in std])


@dataclass
class CheckpointMetadata:
    """Everything needed to use a model file without configs or training code.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    model : ClassSpec
        The network's registered name and constructor arguments.
    data_schema : DataSchema or None
        The data the model was trained on (:class:`~surrogates.schema.DataSchema`): variables, coordinates,
        grid; stored as :meth:`DataSchema.to_dict`.
    conditioning : dict or None
        Rollout models: ``{"names": [...]}``, the trajectory parameters the model is conditioned on (their
        scale is a buffer of the saved model, like the normalization statistics).
    problem : ClassSpec or None
        Pointwise models: the PDE instance they solve (registered physics problem).
    task : str
        Registered name of the training task (information only; never resolved).
    training : dict
        Epoch, step and the metrics at save time (plain numbers).
    package_version : str
        ``surrogates.__version__`` of the writer.
    serving : dict or None
        Optional serving hints (``{"resolution": ...}``).
    format_version : int
        :data:`FORMAT_VERSION` when written by this package.
    """

    kind: str
    model: ClassSpec
    data_schema: DataSchema | None = None
    conditioning: dict[str, Any] | None = None
    problem: ClassSpec | None = None
    task: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    package_version: str = ""
    serving: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.data_schema, Mapping):  # plain data, as written by DataSchema.to_dict
            self.data_schema = _read_schema(dict(self.data_schema), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the checkpoint, checked as the readers check it.

        Raises
        ------
        NotPlainData
            When a value cannot be stored as plain data.
        CheckpointError
            When the metadata would be refused on reading (malformed statistics, schema ...).
        """
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        out = {
            "format_version": int(self.format_version),
            "kind": self.kind,
            "model": self.model.to_dict(),
            # to_plain copies: a schema sharing one list between two entries must still be written as a tree
            "data_schema": to_plain(self.data_schema.to_dict()) if self.data_schema is not None else None,
            "conditioning": to_plain(self.conditioning),
            "problem": self.problem.to_dict() if self.problem is not None else None,
            "task": str(self.task),
            "training": to_plain(self.training),
            "package_version": str(self.package_version),
            "serving": to_plain(self.serving),
        }
        check_plain(out, METADATA_KEY)
        CheckpointMetadata.from_dict(out)  # a writer must never write what the readers refuse
        return out

    @classmethod
    def from_dict(cls, raw: Any, path: Any = None) -> "CheckpointMetadata":
        """Check and read stored metadata (formats 1 and 2 are migrated first).

        Only the metadata is migrated here: the statistics of a format-2 file are checked and dropped.
        A reader of a whole file migrates its ``state_dict`` too (:func:`migrate_checkpoint`), which
        moves them into the saved model's buffers.

        Raises
        ------
        CheckpointError
            Not a mapping, a newer format version, an unknown kind, a missing key, values that are not
            plain data, malformed (format 2) normalization statistics or schema, statistics in a
            format-3 file's metadata.
        """
        if not isinstance(raw, Mapping):
            raise CheckpointError(path, f"'{METADATA_KEY}' metadata must be a mapping, got {type(raw).__name__}")
        version = raw.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CheckpointError(path, f"format_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                path, f"format version {version} is newer than this package reads ({FORMAT_VERSION}); "
                "upgrade surrogates to load it"
            )
        if version == 1:
            raw = migrate_v1(raw, path)
        if raw.get("format_version") == 2:
            raw, _ = _metadata_v2_to_v3(raw, path)
        for key in ("normalization",):
            if raw.get(key) is not None:
                raise CheckpointError(
                    path, f"format {FORMAT_VERSION} metadata must not hold {key!r}: the statistics live in the state_dict"
                )
        for key in ("kind", "model"):
            if key not in raw:
                raise CheckpointError(path, f"metadata lacks {key!r}")
        kind = raw["kind"]
        if kind not in KINDS:
            raise CheckpointError(path, f"unknown kind {kind!r}; known: {list(KINDS)}")
        model = with_added_arguments(ClassSpec.from_dict(raw["model"], "model", path), kind)
        problem = ClassSpec.from_dict(raw["problem"], "problem", path) if raw.get("problem") is not None else None
        extras = {}
        for key in ("data_schema", "conditioning", "training", "serving"):
            value = raw.get(key)
            if value is not None and not isinstance(value, dict):
                raise CheckpointError(path, f"'{key}' must be a mapping, got {type(value).__name__}")
            _check_plain(value, key, path)
            extras[key] = value
        schema = _read_schema(extras["data_schema"], path)
        _check_conditioning(extras["conditioning"], path)
        for key in ("task", "package_version"):
            if not isinstance(raw.get(key, ""), str):
                raise CheckpointError(path, f"'{key}' must be a string")
        return cls(
            kind=kind, model=model, data_schema=schema,
            conditioning=extras["conditioning"], problem=problem, task=raw.get("task", ""),
            training=extras["training"] or {}, package_version=raw.get("package_version", ""),
            serving=extras["serving"], format_version=FORMAT_VERSION,
        )


# -- arguments added after files were written ------------------------------------------------------
_TUCKER_OPTIONS = {"full_rank_modes": ["complex"], "round_up_modes": [], "max_cp_bytes": 2**31}

ADDED_ARGUMENTS: dict[str, dict[str, dict[str, Any]]] = {
    "model": {
        "fno": {"lifting_channels": 0, "channel_mlp_expansion": 0.0, "norm": "none", "skip": "linear"},
        "tfno": dict(_TUCKER_OPTIONS),
        "mg_tfno": {**_TUCKER_OPTIONS, "release_memory": True},
        "pde_refiner": {"first_step_probability": None, "n_steps_input": 1, "n_steps_output": 1},
    },
    "preconditioner": {
        "dcdm": {"coarse_couplings": "average", "coarse_gain": 1.0, "structure": "v_cycle", "init": "random",
                 "scaling": "diagonal"},
    },
}
"""Table (``"model"``, or ``"preconditioner"`` for that kind) -> registered name -> the constructor arguments
added to the class after files of it were written (formats 1 and 2, and format-3 files of earlier package
versions), each with the value those files were built with: the FNO's lifting MLP, channel MLP,
normalization and skip options (off: a linear lifting, a linear skip); the tensorized FNOs' Tucker rank
rules (the real/imaginary mode at full rank, no mode rounded up; the CP size limit, 2 GiB) and MG-TFNO's
heap trimming (on); PDE-Refiner's step draw (uniform) and time window (one state in, one out); the DCDM
network's coarse couplings (2 x 2 averages), coarse gain (1), structure (V-cycle), initialization
(random) and scaling (by the diagonal). Every other argument must be in the file
(:func:`~surrogates.checkpoint.building.construct` refuses a missing one rather than take a default). A class
that gains an argument adds it here, with the value that reproduces its older files."""


def with_added_arguments(model: ClassSpec, kind: str = "operator") -> ClassSpec:
    """``model`` with the :data:`ADDED_ARGUMENTS` of its class that it lacks (the values written ones win)."""
    added = ADDED_ARGUMENTS["preconditioner" if kind == "preconditioner" else "model"].get(model.name, {})
    if all(key in model.kwargs for key in added):
        return model
    return ClassSpec(model.name, {**added, **model.kwargs})


# -- format 1 ---------------------------------------------------------------------------------------
_V1_TASKS = {
    "OperatorRegression": "operator_regression", "Autoregressive": "autoregressive",
    "PhysicsInformed": "physics_informed", "HardConstraintTask": "hard_constraint",
}


def migrate_v1(raw: Mapping[str, Any], path: Any = None) -> dict[str, Any]:
    """Format-1 metadata (unversioned) as format 2: class paths become registered names.

    A class path is accepted only when it is the path of a registered class; it is looked up, never imported.
    """
    from surrogates.checkpoint import registry

    meta = dict(raw)
    model = meta.get("model")
    if not isinstance(model, Mapping) or "class" not in model or "kwargs" not in model:
        raise CheckpointError(path, "metadata (format 1) lacks 'model' with 'class' and 'kwargs'")
    cls = registry.model_class(model["class"], path)
    meta["model"] = {"name": registry.model_name(cls), "kwargs": model["kwargs"]}
    problem = meta.get("problem")
    if problem is not None:
        if not isinstance(problem, Mapping) or "class" not in problem or "kwargs" not in problem:
            raise CheckpointError(path, "metadata (format 1) has a 'problem' without 'class' and 'kwargs'")
        problem_cls = registry.physics_problem_class(problem["class"], path)
        meta["problem"] = {"name": problem_cls.name, "kwargs": problem["kwargs"]}
    task = meta.get("task", "")
    task_class = task.rpartition(".")[2] if isinstance(task, str) else ""
    meta["task"] = _V1_TASKS.get(task_class, task_class)
    if meta.get("kind") != "rollout":
        # only physics-informed tasks recorded a problem (a user's subclass records its own task path)
        meta["kind"] = "pointwise" if meta["task"] == "physics_informed" or problem is not None else "operator"
    meta["package_version"] = str(meta.pop("version", ""))
    meta["format_version"] = 2
    return meta


# -- format 2 ---------------------------------------------------------------------------------------
MODEL_PREFIX = "model."
"""Prefix of the saved model (:mod:`surrogates.models.normalized`) in a format-3 task's ``state_dict``."""

_V2_TASK_BUFFERS = frozenset({
    "input_normalizer.mean", "input_normalizer.std", "target_normalizer.mean", "target_normalizer.std",
    "state_normalizer.mean", "state_normalizer.std", "param_scale",
})
"""Buffers of the format-2 tasks that copied the metadata's statistics (the readers used the metadata)."""


def _metadata_v2_to_v3(raw: Mapping[str, Any], path: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Format-2 metadata as format 3, and the statistics it held (checked): ``{"normalization": {name:
    Statistics}, "param_scale": [...] or None}``."""
    meta = dict(raw)
    normalization_raw = meta.pop("normalization", None) or {}
    if not isinstance(normalization_raw, Mapping):
        raise CheckpointError(path, "'normalization' must be a mapping")
    normalization = {
        str(name): Statistics.from_dict(value, f"normalization.{name}", path) for name, value in normalization_raw.items()
    }
    scale = None
    conditioning = meta.get("conditioning")
    if isinstance(conditioning, Mapping) and conditioning:
        scale = _check_scale(conditioning, path)
        meta["conditioning"] = {key: value for key, value in conditioning.items() if key != "scale"}
    meta["format_version"] = 3
    return meta, {"normalization": normalization, "param_scale": scale}


def migrate_v2(contents: Mapping[str, Any], path: Any = None) -> dict[str, Any]:
    """A whole format-2 checkpoint (``state_dict`` and metadata) in the format-3 layout.

    Format 2 kept the statistics twice: as lists in the metadata, which the readers used, and as the
    task's buffers (``input_normalizer.*``, ``target_normalizer.*``, ``state_normalizer.*``,
    ``param_scale``; absent from files written by ``write_checkpoint``). Format 3 keeps them once, as
    buffers of the saved model under ``model.``. For the ``operator`` and ``rollout`` kinds:

    - ``net.<key>`` becomes ``model.net.<key>``;
    - the metadata's statistics become ``model.input_normalizer.{mean,std}`` and
      ``model.target_normalizer.{mean,std}`` (operator), ``model.state_normalizer.{mean,std}`` and
      ``model.param_scale`` (rollout; ``conditioning.scale``), float32 as the readers built them;
    - the task's copies are dropped; every other entry (a weight average ``ema.module.*``) is kept.

    Other kinds (pointwise, preconditioner) keep their ``state_dict``; their (identity) statistics are
    dropped from the metadata. Returns a new dict; ``contents`` is not modified.

    Raises
    ------
    CheckpointError
        Malformed statistics, or an operator / rollout file without the statistics it needs.
    """
    import torch

    contents = dict(contents)
    meta, extracted = _metadata_v2_to_v3(contents[METADATA_KEY], path)
    contents[METADATA_KEY] = meta
    state = contents.get("state_dict")
    kind = meta.get("kind")
    if kind not in ("operator", "rollout") or not isinstance(state, Mapping):
        return contents
    normalization = extracted["normalization"]

    def stats(name: str) -> Statistics:
        if name not in normalization:
            raise CheckpointError(path, f"format-2 {kind} checkpoint lacks the {name} normalization")
        return normalization[name]

    def vector(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64).to(torch.float32)

    new_state: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(key, str) and key.startswith("net."):
            new_state[MODEL_PREFIX + key] = value
        elif key not in _V2_TASK_BUFFERS:
            new_state[key] = value
    if kind == "operator":
        buffers = {"input_normalizer": stats("input"), "target_normalizer": stats("target")}
    else:
        buffers = {"state_normalizer": stats("input")}
        new_state[MODEL_PREFIX + "param_scale"] = vector(extracted["param_scale"] or [])
    for name, value in buffers.items():
        new_state[f"{MODEL_PREFIX}{name}.mean"] = vector(value.mean)
        new_state[f"{MODEL_PREFIX}{name}.std"] = vector(value.std)
    contents["state_dict"] = new_state
    return contents


def migrate_checkpoint(contents: Mapping[str, Any], path: Any = None) -> dict[str, Any]:
    """A whole checkpoint dict in the current format: :func:`migrate_v1` (metadata), then :func:`migrate_v2`.

    Files of the current format are returned as they are (a new dict); malformed metadata is left for
    :meth:`CheckpointMetadata.from_dict` to refuse.
    """
    contents = dict(contents)
    raw = contents.get(METADATA_KEY)
    if not isinstance(raw, Mapping):
        return contents
    version = raw.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        return contents
    if version == 1:
        contents[METADATA_KEY] = migrate_v1(raw, path)
        version = 2
    if version == 2:
        contents = migrate_v2(contents, path)
    return contents


# -- checks -----------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_plain(value: Any, where: str, path: Any) -> None:
    try:
        check_plain(value, where)
    except NotPlainData as error:
        raise CheckpointError(path, str(error)) from None


def _read_schema(raw: dict[str, Any] | None, path: Any) -> DataSchema | None:
    if not raw:
        return None
    try:
        return DataSchema.from_dict(raw)
    except SchemaError as error:
        raise CheckpointError(path, f"data_schema: {error}") from None


def _check_conditioning(conditioning: dict[str, Any] | None, path: Any) -> None:
    if not conditioning:
        return
    names = conditioning.get("names", [])
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(path, "conditioning.names must be a list of strings")
    if "scale" in conditioning:
        raise CheckpointError(
            path, f"format {FORMAT_VERSION} conditioning must not hold 'scale': it is the saved model's param_scale buffer"
        )


def _check_scale(conditioning: Mapping[str, Any], path: Any) -> list[float]:
    """The ``conditioning.scale`` of format-2 metadata, checked (finite, non-zero, one per name)."""
    names, scale = conditioning.get("names", []), conditioning.get("scale", [])
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(path, "conditioning.names must be a list of strings")
    if not (isinstance(scale, list) and all(_is_number(v) and math.isfinite(v) and v != 0 for v in scale)):
        raise CheckpointError(path, "conditioning.scale must be a list of finite, non-zero numbers")
    if len(names) != len(scale):
        raise CheckpointError(path, f"conditioning has {len(names)} names but {len(scale)} scales")
    return [float(v) for v in scale]
