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
    """
    optimizer = optimizer_factory(params=parameters)
    if scheduler_factory is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler_factory(optimizer=optimizer)}}
