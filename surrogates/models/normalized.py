"""The saved model: a network with its normalization, in physical units.

A network is trained on normalized data; what a checkpoint saves, and what training, evaluation,
:class:`~surrogates.serve.surrogate.Surrogate`, :class:`~surrogates.serve.rollout.RolloutSurrogate`
and the service call, is one module that wraps ``encode -> network -> decode``:

- :class:`NormalizedOperator` (checkpoint kind ``"operator"``): FNO, MgNO, U-Net, hard-constraint models;
- :class:`NormalizedStepper` (kind ``"rollout"``): one-step models (PDE-Refiner, the MSE U-Net) with
  their state normalization and the scale of their conditioning parameters.

The statistics are buffers of these modules, so they travel in the ``state_dict`` (under ``model.``
in a task's checkpoint) and nowhere else. The wrappers are fixed package classes: a reader picks one
by the checkpoint's ``kind``, never by a name found in the file.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from surrogates.models.base import OperatorModel
from surrogates.nn.normalization import Normalizer

__all__ = ["NormalizedOperator", "NormalizedStepper"]


def _check_normalizer(normalizer: Normalizer, name: str) -> list[str]:
    problems = []
    if not (torch.isfinite(normalizer.mean).all() and torch.isfinite(normalizer.std).all()):
        problems.append(f"{name} statistics hold NaN or infinite values")
    elif (normalizer.std < 0).any():
        problems.append(f"{name} standard deviations must not be negative")
    return problems


class NormalizedOperator(nn.Module):
    """``decode(net(encode(x)))``: a field-to-field operator in physical units.

    Parameters
    ----------
    net
        The operator on normalized fields, ``(B, C_in, *spatial) -> (B, C_out, *spatial)``; an
        :class:`~surrogates.models.base.OperatorModel` whose ``init_kwargs`` name ``in_channels`` and
        ``out_channels``.
    input_normalizer, target_normalizer
        Per-channel statistics of the inputs (``C_in``) and targets (``C_out``); default: empty
        normalizers (mean 0, std 1) of the right sizes, to be filled by ``load_state_dict`` or from a
        data module.

    Attributes
    ----------
    net, input_normalizer, target_normalizer
        The submodules; their weights and buffers are the module's ``state_dict``
        (``net.*``, ``input_normalizer.mean`` ...).
    """

    def __init__(
        self,
        net: OperatorModel,
        input_normalizer: Normalizer | None = None,
        target_normalizer: Normalizer | None = None,
    ):
        super().__init__()
        kwargs = getattr(net, "init_kwargs", {})
        self.net = net
        self.input_normalizer = input_normalizer if input_normalizer is not None else Normalizer(kwargs["in_channels"])
        self.target_normalizer = target_normalizer if target_normalizer is not None else Normalizer(kwargs["out_channels"])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``(B, C_in, *spatial)`` in physical units -> the network's normalized inputs (same shape)."""
        return self.input_normalizer.encode(x)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """The network's normalized outputs ``(B, C_out, *spatial)`` -> targets in physical units (same shape)."""
        return self.target_normalizer.decode(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict targets in physical units from inputs in physical units.

        Parameters
        ----------
        x
            Input fields, shape ``(B, C_in, *spatial)``.

        Returns
        -------
        torch.Tensor
            Predicted fields, shape ``(B, C_out, *spatial)``.
        """
        return self.decode(self.net(self.encode(x)))

    def problems(self) -> list[str]:
        """What is wrong with the statistics (non-finite values, negative spreads); empty when they are usable."""
        return _check_normalizer(self.input_normalizer, "input") + _check_normalizer(self.target_normalizer, "target")


class NormalizedStepper(nn.Module):
    """A one-step model ``u(t), params -> u(t + dt)`` in physical units, and its rollouts.

    With a time window (the network's ``n_steps_input``, ``n_steps_output``) it maps the last
    ``n_steps_input`` states to the next ``n_steps_output``, both stacked time-major on the channel axis.

    States are normalized per channel (``state_normalizer``, the same for input and output);
    conditioning parameters (e.g. ``dt``, ``dx``) are divided by ``param_scale`` (their training mean).

    Parameters
    ----------
    net
        A :class:`~surrogates.models.pde_refiner.PDERefiner` (``in_channels`` state channels,
        ``n_params`` parameters).
    state_normalizer
        Statistics of the ``C`` state channels; default: an empty normalizer (mean 0, std 1).
    param_scale
        ``(P,)`` scale of the parameters; default: ones. A tensor is registered as given (not copied).

    Attributes
    ----------
    net, state_normalizer
        The submodules.
    param_scale : torch.Tensor
        Buffer of shape ``(P,)``.
    """

    param_scale: torch.Tensor

    def __init__(self, net: nn.Module, state_normalizer: Normalizer | None = None, param_scale: Any = None):
        super().__init__()
        self.net = net
        self.state_normalizer = state_normalizer if state_normalizer is not None else Normalizer(net.in_channels)
        if param_scale is None:
            param_scale = torch.ones(net.n_params)
        elif not isinstance(param_scale, torch.Tensor):
            param_scale = torch.as_tensor(param_scale, dtype=torch.float32)
        self.register_buffer("param_scale", param_scale)

    def with_network(self, net: nn.Module) -> "NormalizedStepper":
        """The same normalization around another network of the same architecture (e.g. a weight average).

        The normalizer and ``param_scale`` are shared, not copied.
        """
        return NormalizedStepper(net, self.state_normalizer, self.param_scale)

    # -- units ------------------------------------------------------------------------------------
    def encode(self, state: torch.Tensor) -> torch.Tensor:
        """States ``(B, C, *spatial)`` or time-major windows ``(B, n C, *spatial)`` in physical units -> normalized
        (same shape; every state of a window with the same per-channel statistics)."""
        return self._per_state(self.state_normalizer.encode, state)

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """Normalized states ``(B, C, *spatial)`` or windows ``(B, n C, *spatial)`` -> physical units (same shape)."""
        return self._per_state(self.state_normalizer.decode, state)

    def _per_state(self, transform: Any, window: torch.Tensor) -> torch.Tensor:
        channels = self.net.in_channels
        if window.shape[1] == channels:
            return transform(window)
        states = window.reshape(window.shape[0] * (window.shape[1] // channels), channels, *window.shape[2:])
        return transform(states).reshape(window.shape)

    @property
    def n_steps_input(self) -> int:
        """States the network takes (1 without a time window)."""
        return int(getattr(self.net, "n_steps_input", 1))

    @property
    def n_steps_output(self) -> int:
        """States one prediction gives (1 without a time window)."""
        return int(getattr(self.net, "n_steps_output", 1))

    def initial_window(self, trajectories: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The input of a rollout from state ``start`` of ``trajectories`` ``(B, T, C, *spatial)``: state ``start``
        ``(B, C, *spatial)``, or with a time window states ``start .. start + n_steps_input - 1`` stacked time-major
        ``(B, n_steps_input C, *spatial)``."""
        n = self.n_steps_input
        if n == 1:
            return trajectories[:, start]
        if start + n > trajectories.shape[1]:
            raise ValueError(f"a window of {n} states from state {start} needs {start + n} states, got {trajectories.shape[1]}")
        return trajectories[:, start : start + n].flatten(1, 2)

    def encode_params(self, params: torch.Tensor | None) -> torch.Tensor | None:
        """Parameters ``(B, P)`` in physical units -> the network's scaled parameters (None without conditioning)."""
        if self.net.n_params == 0 or params is None:
            return None
        return params.to(self.param_scale.dtype) / self.param_scale

    # -- prediction -------------------------------------------------------------------------------
    def predict(
        self, state: torch.Tensor, params: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The next state.

        Parameters
        ----------
        state
            ``(B, C, *spatial)`` in physical units.
        params
            ``(B, P)`` in physical units (None when the model takes no parameters).
        generator
            Source of the refinement noise (PDE-Refiner with ``K > 0``).

        Returns
        -------
        torch.Tensor
            ``(B, C, *spatial)`` in physical units.
        """
        return self.decode(self.net.predict(self.encode(state), self.encode_params(params), generator))

    forward = predict  # calling the module predicts the next state

    def rollout(self, state: torch.Tensor, steps: int, params: torch.Tensor | None = None, generator: Any = None) -> torch.Tensor:
        """``steps`` successive predictions from ``state``.

        Parameters
        ----------
        state
            Initial states ``(B, C, *spatial)`` in physical units.
        steps
            Number of predicted states.
        params
            ``(B, P)`` in physical units, the same for every step.
        generator
            Source of the refinement noise.

        Returns
        -------
        torch.Tensor
            ``(B, steps, C, *spatial)`` in physical units (the states after ``state``).
        """
        out = self.net.rollout(self.encode(state), int(steps), self.encode_params(params), generator)
        return self.decode(out.flatten(0, 1)).view(out.shape)

    def loss(self, state: torch.Tensor, target: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """The network's training objective (``net.loss``) on a pair of states in physical units, in normalized units.

        Parameters
        ----------
        state, target
            ``(B, C, *spatial)``: ``u(t)`` and ``u(t + dt)`` in physical units.
        params
            ``(B, P)`` in physical units.
        """
        return self.net.loss(self.encode(state), self.encode(target), self.encode_params(params))

    def problems(self) -> list[str]:
        """What is wrong with the statistics and the parameter scale; empty when they are usable."""
        problems = _check_normalizer(self.state_normalizer, "state")
        if not torch.isfinite(self.param_scale).all() or (self.param_scale == 0).any():
            problems.append("param_scale must hold finite, non-zero numbers")
        return problems
