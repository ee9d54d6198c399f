"""The optimizer set-up every task shares: Hydra partials in, what Lightning's ``configure_optimizers`` returns out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["optimizer_config"]


def optimizer_config(
    parameters: Iterable[torch.nn.Parameter],
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    scheduler_factory: Callable[..., Any] | None = None,
) -> torch.optim.Optimizer | dict[str, Any]:
    """The optimizer over ``parameters`` and, when given, its scheduler (stepped once per epoch).

    Parameters
    ----------
    parameters
        The task's parameters.
    optimizer_factory
        Partial constructor taking ``params`` (a Hydra node with ``_partial_: true``).
    scheduler_factory
        Optional partial constructor taking ``optimizer``.

    Raises
    ------
    ValueError
        If a constructor refuses its settings (``task.optimizer.lr=abc``, an unknown keyword): the message names
        the config node, the class and the settings, so that the commands report it in one line.
    """
    optimizer = _built("task.optimizer", optimizer_factory, params=parameters)
    if scheduler_factory is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": _built("task.scheduler", scheduler_factory, optimizer=optimizer)}}


def _built(node: str, factory: Callable[..., Any], **arguments: Any) -> Any:
    """``factory(**arguments)``; a ``TypeError`` or ``ValueError`` of the constructor (a setting of the wrong type or
    range, a keyword it does not take) becomes a ``ValueError`` naming ``node``, the class and its settings."""
    try:
        return factory(**arguments)
    except (TypeError, ValueError) as error:
        target = getattr(factory, "func", factory)
        settings = dict(getattr(factory, "keywords", None) or {})
        name = getattr(target, "__qualname__", None) or type(target).__name__
        raise ValueError(f"{node} ({name} with {settings}): {error}") from error
