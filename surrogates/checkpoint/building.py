"""Rebuild the model a checkpoint describes from its registered name and constructor arguments, checked.

:func:`construct` checks the arguments against the class's signature (all of them given);
:func:`build_model` and :func:`build_predictor` build the model on the ``meta`` device first (no tensor
memory; its registrations counted against the file's size, :mod:`surrogates.checkpoint.registration_limit`),
compare every entry's name, shape and dtype with the file's before allocating
(:mod:`surrogates.checkpoint.state_checks`), then load the weights and check that they are finite.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from surrogates.checkpoint import registry
from surrogates.checkpoint.metadata import ClassSpec, with_added_arguments
from surrogates.checkpoint.registration_limit import registration_limit
from surrogates.checkpoint.state_checks import check_finite, compare_state
from surrogates.errors import CheckpointError

__all__ = ["build_model", "build_predictor", "construct"]

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
    except CheckpointError:  # the skeleton's registration limit (registration_limit) names the file already
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
        compare_state(skeleton.state_dict(), state, path)
        _check_derived_buffers(skeleton, state, path)
        del skeleton
    model = make()
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:  # what the comparison does not see (e.g. overlapping memory)
            raise CheckpointError(path, f"weights do not load into {what}: {error}") from None
        check_finite(model, path)
    return model


def _skeleton(make: Callable[[], torch.nn.Module], entries: int, path: Any) -> torch.nn.Module:
    """``make()`` on the ``meta`` device (no memory for tensors), refused once it registers more parameters,
    buffers and submodules than a file of ``entries`` tensors can need."""
    limit = REGISTRATIONS_PER_ENTRY * entries + REGISTRATION_SLACK
    with registration_limit(limit, entries, path), torch.device("meta"):
        return make()


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
