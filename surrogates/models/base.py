"""Base class of neural operators: a model records its constructor arguments.

A checkpoint stores ``model.init_config()`` (registered name and constructor arguments) next to the
weights, so that :func:`surrogates.checkpoint.build_model` rebuilds the same architecture without
Hydra or the training code. The name selects from the package's allowlist of models
(:mod:`surrogates.checkpoint.registry`); nothing named in a file is imported.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

MAX_LAYERS = 1024
"""Upper bound of the models' layer counts (``n_layers``): far above any trained network, and a bound the
constructors check before they build (or allocate) anything per layer."""


class OperatorModel(nn.Module):
    """An ``nn.Module`` that remembers how it was constructed.

    Subclasses only write a normal ``__init__``; the arguments it was called with (defaults
    filled in) are kept in ``self.init_kwargs``. Arguments must be plain Python values
    (numbers, strings, lists, dicts, None) so that they can be saved.
    """

    init_kwargs: dict[str, Any]
    registered_name: str = ""
    """Name under which checkpoints record the class (``"fno"``); the registry maps it back to the class."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        original_init = cls.__init__
        signature = inspect.signature(original_init)

        @functools.wraps(original_init)
        def recording_init(self, *args, **kw):
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop("self")
            # The outermost (most derived) constructor's arguments win.
            if not hasattr(self, "_recording_depth"):
                object.__setattr__(self, "_recording_depth", 0)
            object.__setattr__(self, "_recording_depth", self._recording_depth + 1)
            try:
                original_init(self, *args, **kw)
            finally:
                object.__setattr__(self, "_recording_depth", self._recording_depth - 1)
            if self._recording_depth == 0:
                object.__setattr__(self, "init_kwargs", _plain(arguments))

        cls.__init__ = recording_init

    def check_grid_input(self, x: Any) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``(B, self.in_channels, *spatial)`` with ``self.dim`` spatial dims.

        For the grid models (FNO, MgNO, U-Net), which set ``in_channels`` and ``dim``.
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            spatial = ", ".join(f"n{i + 1}" for i in range(self.dim))
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, {self.in_channels}, {spatial}) "
                f"({self.dim}D, {self.in_channels} channels), got {tuple(x.shape)}"
            )

    def init_config(self) -> dict[str, Any]:
        """``{"name": registered name, "kwargs": {...}}``: everything needed to rebuild the model.

        The name is the class's own ``registered_name`` (not a parent's: a subclass must not be
        rebuilt as its parent), else its name in lower case.
        """
        name = type(self).__dict__.get("registered_name") or type(self).__name__.lower()
        return {"name": name, "kwargs": dict(self.init_kwargs)}


def _plain(value: Any) -> Any:
    """Convert OmegaConf containers and tuples into plain lists/dicts so they pickle without Hydra."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
