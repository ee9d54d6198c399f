"""The allowlists: which classes a name found in a file may select.

A model file names its network, its physics problem or its parametric PDE by a *registered name*
(``"fno"``, ``"helmholtz"``, ``"thermal_block"``). The name is looked up in one of the tables below,
which list the package's own classes explicitly (as neuraloperator's model registry does); nothing
named in a file is ever imported, and a name outside the table is refused with
:class:`~surrogates.errors.CheckpointError`. Files written before the registry (format 1) named a
class by its import path (``"surrogates.models.fno.FNO"``); those paths are accepted only when they
are the path of a class in the table.

A user who writes their own model registers it from their own code with :func:`register_model`:
then their checkpoints load too. That is a decision made in code, never by a file.

The tables are built on first use by importing fixed package modules (so that importing this module
stays cheap and free of cycles).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from surrogates.errors import CheckpointError

__all__ = [
    "model_class", "model_name", "network_class", "predictor_class", "physics_problem_class", "preconditioner_name", "physics_problem_name", "register_model",
    "reduced_problem_class", "reduced_problem_name", "registered_models", "task_name",
]


class _Table:
    """Registered name -> class, built lazily by ``load``; also maps the classes' import paths (format 1)."""

    def __init__(self, what: str, load: Callable[[], dict[str, type]]):
        self.what, self._load = what, load
        self._classes: dict[str, type] | None = None
        self._extra: dict[str, type] = {}

    @property
    def classes(self) -> dict[str, type]:
        if self._classes is None:
            self._classes = dict(self._load())
        return {**self._classes, **self._extra}

    def register(self, name: str, cls: type, base: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"only subclasses of {base.__name__} can be registered as {self.what}s, got {cls!r}")
        known = self.classes.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"{self.what} name {name!r} is already registered for {known.__module__}.{known.__qualname__}")
        self._extra[name] = cls

    def lookup(self, name: Any, base: type, path: Any = None) -> type:
        if not isinstance(name, str) or not name:
            raise CheckpointError(path, f"the {self.what} name must be a non-empty string, got {name!r}")
        classes = self.classes
        cls = classes.get(name)
        if cls is None:  # format 1 files name the import path; accept it only for a registered class
            cls = next((c for c in classes.values() if _import_path(c) == name), None)
        if cls is None:
            raise CheckpointError(path, f"unknown {self.what} {name!r}; known: {sorted(classes)}")
        if not (isinstance(cls, type) and issubclass(cls, base)):  # pragma: no cover - the tables hold the right bases
            raise CheckpointError(path, f"{self.what} {name!r} is not a {base.__name__}")
        return cls

    def name_of(self, cls: type) -> str:
        for name, registered in self.classes.items():
            if registered is cls:
                return name
        raise ValueError(
            f"{cls.__module__}.{cls.__qualname__} is not a registered {self.what}; register it with "
            f"surrogates.checkpoint.register_model (models) so that its files can be read back"
        )


def _import_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the tables ---------------------------------------------------------------------------------------
def _package_models() -> dict[str, type]:
    from surrogates.models.fno import FNO
    from surrogates.models.hc_moe import HardConstraintMoE
    from surrogates.models.mgno import MgNO
    from surrogates.models.mg_tfno import MGTFNO
    from surrogates.models.mlp import MLP
    from surrogates.models.pde_refiner import PDERefiner
    from surrogates.models.pig import PIG
    from surrogates.models.tfno import TFNO
    from surrogates.models.unet import UNet

    return {cls.registered_name: cls for cls in (FNO, MgNO, UNet, PDERefiner, PIG, MLP, HardConstraintMoE, TFNO, MGTFNO)}


def _package_physics_problems() -> dict[str, type]:
    from surrogates.pdes.physics import AllenCahn, DarcyPoisson, Helmholtz2D, KleinGordon

    return {cls.name: cls for cls in (AllenCahn, DarcyPoisson, Helmholtz2D, KleinGordon)}


def _package_reduced_problems() -> dict[str, type]:
    from surrogates.pdes.gaussian_bump import GaussianBump
    from surrogates.pdes.thermal_block import ThermalBlock

    return {cls.name: cls for cls in (ThermalBlock, GaussianBump)}


def _package_preconditioners() -> dict[str, type]:
    from surrogates.solvers.dcdm.network import DCDMNet
    from surrogates.solvers.preconditioners.learned import PreconditionerGNN

    return {"gnn": PreconditionerGNN, "dcdm": DCDMNet}


def _package_tasks() -> dict[str, type]:
    from surrogates.tasks.autoregressive import Autoregressive
    from surrogates.tasks.hard_constraint import HardConstraintTask
    from surrogates.tasks.operator_regression import OperatorRegression
    from surrogates.tasks.physics_informed import PhysicsInformed

    return {
        "operator_regression": OperatorRegression, "autoregressive": Autoregressive,
        "physics_informed": PhysicsInformed, "hard_constraint": HardConstraintTask,
    }


_MODELS = _Table("model", _package_models)
_PHYSICS = _Table("physics problem", _package_physics_problems)
_REDUCED = _Table("reduced-basis problem", _package_reduced_problems)
_TASKS = _Table("task", _package_tasks)
_PRECONDITIONERS = _Table("learned preconditioner", _package_preconditioners)


def _operator_model_base() -> type:
    from surrogates.models.base import OperatorModel

    return OperatorModel


def registered_models() -> dict[str, type]:
    """Registered name -> model class (the package's models and those added by :func:`register_model`)."""
    return _MODELS.classes


def register_model(cls: type, name: str | None = None) -> type:
    """Allow checkpoints to name ``cls`` (a subclass of :class:`~surrogates.models.base.OperatorModel`).

    Call it from your own code (usable as a class decorator); ``name`` defaults to the class's own
    ``registered_name`` attribute, else its name in lower case. Returns ``cls``.
    """
    name = name or cls.__dict__.get("registered_name") or cls.__name__.lower()
    _MODELS.register(name, cls, _operator_model_base())
    if cls.__dict__.get("registered_name") != name:
        cls.registered_name = name  # init_config() records the name the registry knows
    return cls


def model_class(name: Any, path: Any = None) -> type:
    """The model class registered as ``name`` (or, for format-1 files, at that import path).

    Raises
    ------
    CheckpointError
        When the name is not registered (``path`` is the file named in the message).
    """
    return _MODELS.lookup(name, _operator_model_base(), path)


def network_class(kind: str, name: Any, path: Any = None) -> type:
    """The class a file of ``kind`` may name: a learned preconditioner network for ``"preconditioner"``,
    a model (:func:`model_class`) for every other kind."""
    if kind == "preconditioner":
        from torch import nn

        return _PRECONDITIONERS.lookup(name, nn.Module, path)
    return model_class(name, path)


def predictor_class(kind: str, path: Any = None) -> type:
    """The normalization wrapper of a file's saved model, fixed by its kind (never named by the file):
    :class:`~surrogates.models.normalized.NormalizedOperator` for ``"operator"``,
    :class:`~surrogates.models.normalized.NormalizedStepper` for ``"rollout"``.

    Raises
    ------
    CheckpointError
        For the other kinds, which save the network alone.
    """
    from surrogates.models.normalized import NormalizedOperator, NormalizedStepper

    wrappers = {"operator": NormalizedOperator, "rollout": NormalizedStepper}
    if kind not in wrappers:
        raise CheckpointError(path, f"a {kind!r} checkpoint has no normalization wrapper (only {sorted(wrappers)} do)")
    return wrappers[kind]


def preconditioner_name(model: Any) -> str:
    return _PRECONDITIONERS.name_of(type(model))


def model_name(model_or_class: Any) -> str:
    """The registered name of a model (instance or class); ``ValueError`` for an unregistered class."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    return _MODELS.name_of(cls)


def physics_problem_class(name: Any, path: Any = None) -> type:
    """The physics-informed problem (:class:`~surrogates.pdes.physics.PhysicsProblem`) registered as ``name``."""
    from surrogates.pdes.physics.base import PhysicsProblem

    return _PHYSICS.lookup(name, PhysicsProblem, path)


def physics_problem_name(problem: Any) -> str:
    return _PHYSICS.name_of(type(problem))


def reduced_problem_class(name: Any, path: Any = None) -> type:
    """The parametric diffusion problem (:class:`~surrogates.solvers.reduced_basis.problem.DiffusionProblem`)
    a reduced model file may name."""
    from surrogates.solvers.reduced_basis.problem import DiffusionProblem

    return _REDUCED.lookup(name, DiffusionProblem, path)


def reduced_problem_name(problem: Any) -> str:
    return _REDUCED.name_of(type(problem))


def task_name(task: Any) -> str:
    """The registered name of a training task (recorded in checkpoints as information, never resolved)."""
    cls = task if isinstance(task, type) else type(task)
    for name, registered in _TASKS.classes.items():
        if cls is registered:
            return name
    for name, registered in _TASKS.classes.items():  # a user's subclass records its package parent
        if issubclass(cls, registered):
            return name
    return cls.__name__
