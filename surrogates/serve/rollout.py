"""`RolloutSurrogate`: a one-step model (PDE-Refiner, MSE U-Net) loaded from its checkpoint, rolling out trajectories.

Examples
--------
>>> s = RolloutSurrogate.load("outputs/train/runs/<run>/checkpoints/best.ckpt")  # doctest: +SKIP
>>> u = s.rollout(u0, steps=100, dt=0.8, dx=0.25, seed=0)   # (n, 256) -> (n, 100, 256)  # doctest: +SKIP
>>> runs = s.rollout_ensemble(u0, 100, seeds=[0, 1, 2], dt=0.8, dx=0.25)   # (3, n, 100, 256)  # doctest: +SKIP

A model trained on time windows (``n_steps_input`` states -> ``n_steps_output``) takes the first
``n_steps_input`` states, ``(n, n_steps_input, [C,] *spatial)``, and moves its window on by
``n_steps_output`` states per prediction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.checkpoint import Checkpoint, read_checkpoint
from surrogates.errors import CheckpointError
from surrogates.models.normalized import NormalizedStepper
from surrogates.models.pde_refiner import ROLLOUT_KIND, PDERefiner
from surrogates.schema import DataSchema, Variable, window_channel
from surrogates.serve.inputs import (
    InputError, check_channels, check_finite, check_layout, check_numbers, check_xarray_coordinates, declared_units,
    dims_named_as_sent, non_finite_message, sent_dim_names, split_channels, stack, trained_dim_names,
)
from surrogates.serve.surrogate import Surrogate, checkpoint_metadata, require_kind

__all__ = ["ROLLOUT_KIND", "RolloutSurrogate", "is_rollout_checkpoint", "load_surrogate"]


def is_rollout_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint of a one-step (rollout) model; False for other or unreadable files."""
    try:
        return read_checkpoint(path).kind == ROLLOUT_KIND
    except CheckpointError:
        return False


def load_surrogate(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """The model of a training checkpoint, reading the file once, by its kind: a :class:`RolloutSurrogate`
    for a one-step model (PDE-Refiner, MSE U-Net), a :class:`~surrogates.serve.pointwise.PointwiseSurrogate`
    for a physics-informed network (PIG, PINN), a :class:`~surrogates.serve.surrogate.Surrogate` for an operator.

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable, not written by a surrogates task, or invalid.
    """
    checkpoint = read_checkpoint(path)
    if checkpoint.kind == ROLLOUT_KIND:
        return RolloutSurrogate.from_checkpoint(checkpoint, device)
    if checkpoint.kind == "pointwise":
        from surrogates.serve.pointwise import PointwiseSurrogate

        return PointwiseSurrogate.from_checkpoint(checkpoint, device)
    return Surrogate.from_checkpoint(checkpoint, device)


def _is_xarray(value: Any) -> bool:
    """Whether ``value`` is an xarray DataArray or Dataset (without importing xarray for numpy input)."""
    return type(value).__module__.startswith("xarray.")


def _spatial_last(var: Any, spatial_dims: Sequence[str]) -> Any:
    """``var`` with its spatial dims last, in the model's order; its other dims (sample, time) keep theirs."""
    present = [dim for dim in spatial_dims if dim in var.dims]
    return var.transpose(*(dim for dim in var.dims if dim not in present), *present)


class RolloutSurrogate:
    """A one-step model with its normalization, conditioning and data schema, for rollouts.

    Load with :meth:`load`. :meth:`rollout` takes initial states and the trajectory parameters
    (e.g. ``dt``, ``dx``) in physical units and returns the predicted states after them, by calling
    the saved model (:class:`~surrogates.models.normalized.NormalizedStepper`: state normalizer,
    parameter scale, network; the weight average when the task kept one).

    Parameters
    ----------
    predictor
        The saved model.
    conditioning
        Names of the parameters, in the order of the model's ``P`` parameters.
    schema, metadata, device
        As for :class:`~surrogates.serve.surrogate.Surrogate`.
    """

    def __init__(
        self,
        predictor: NormalizedStepper,
        conditioning: Sequence[str],
        schema: DataSchema | None = None,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ):
        if not isinstance(predictor, NormalizedStepper):
            raise TypeError(f"predictor must be a NormalizedStepper, got {type(predictor).__name__}")
        self.device = torch.device(device)
        self.predictor = predictor.to(self.device).eval()
        self.conditioning = list(conditioning)
        self.schema = schema if schema is not None else DataSchema(kind="trajectory")
        self.metadata = metadata or {}

    @property
    def model(self) -> PDERefiner:
        """The network inside :attr:`predictor` (on normalized states)."""
        return self.predictor.net

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "RolloutSurrogate":
        """Rebuild from a checkpoint of :class:`~surrogates.tasks.autoregressive.Autoregressive`.

        Raises
        ------
        CheckpointError
            When the file is missing, unreadable, not a rollout checkpoint, or invalid.
        """
        return cls.from_checkpoint(read_checkpoint(path), device)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, device: str | torch.device = "cpu") -> "RolloutSurrogate":
        """:meth:`load` on a checkpoint already read by :func:`surrogates.checkpoint.read_checkpoint`."""
        require_kind(checkpoint, ROLLOUT_KIND)
        meta = checkpoint.metadata
        predictor = checkpoint.build_predictor()
        if not isinstance(predictor.net, PDERefiner):
            raise CheckpointError(
                checkpoint.path, f"a rollout checkpoint must hold a PDERefiner, not a {type(predictor.net).__name__}"
            )
        names = (meta.conditioning or {}).get("names", [])
        if len(names) != predictor.net.n_params:
            raise CheckpointError(
                checkpoint.path, f"the model takes {predictor.net.n_params} parameter(s) but the file names {names}"
            )
        return cls(predictor, names, meta.data_schema, checkpoint_metadata(checkpoint), device)

    # -- description ------------------------------------------------------------------------------
    @property
    def refinement_steps(self) -> int:
        """``K`` (0 for the MSE baseline)."""
        return self.model.num_refinement_steps

    @property
    def evaluations_per_step(self) -> int:
        """Network evaluations per predicted step, ``K + 1``."""
        return self.model.evaluations_per_step

    @property
    def stochastic(self) -> bool:
        """Whether predictions depend on the seed (``K > 0``)."""
        return self.refinement_steps > 0

    # -- rollout ----------------------------------------------------------------------------------
    def _params(self, n: int, params: dict[str, Any]) -> torch.Tensor | None:
        """The conditioning parameters as ``(n, P)`` float32, checked as the service checks them: real numbers
        (``InputError`` ``invalid_array``), finite in float32 (``non_finite``), one or ``n`` values each."""
        missing = [name for name in self.conditioning if params.get(name) is None]
        if missing:
            raise ValueError(f"the model is conditioned on {self.conditioning}; pass {', '.join(f'{m}=...' for m in missing)}")
        unknown = sorted(set(params) - set(self.conditioning))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; the model is conditioned on {self.conditioning}")
        if not self.conditioning:
            return None
        columns = []
        for name in self.conditioning:
            raw = np.asarray(params[name])
            check_numbers(name, raw, "parameter")
            with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
                value = raw.astype(np.float32).reshape(-1)
            if value.size not in (1, n):
                raise ValueError(f"{name} must be a number or one value per trajectory ({n}), got {value.size} values")
            finite = np.isfinite(value)
            if not finite.all():
                raise InputError("non_finite", non_finite_message(name, np.flatnonzero(~finite).tolist()))
            columns.append(torch.from_numpy(value).expand(n))
        return torch.stack(columns, dim=1).to(self.device)

    @property
    def state(self) -> list[str]:
        """Names of the state variables, one channel each."""
        return list(self.schema.state or self.schema.inputs) or [f"u_{i}" for i in range(self.model.in_channels)]

    @property
    def n_steps_input(self) -> int:
        """States the model takes (1 without a time window)."""
        return self.predictor.n_steps_input

    @property
    def n_steps_output(self) -> int:
        """States one prediction gives (1 without a time window)."""
        return self.predictor.n_steps_output

    @property
    def input_channels(self) -> list[str]:
        """Names of the input channels: the state variables, or with a time window ``<state>_t<k>`` for
        ``k = 0 .. n_steps_input - 1``, time-major (``u_t0, v_t0, u_t1, v_t1``); the service's input names."""
        if self.n_steps_input == 1:
            return self.state
        return [window_channel(name, k) for k in range(self.n_steps_input) for name in self.state]

    @property
    def spatial_dims(self) -> list[str]:
        """Names of the spatial dims, e.g. ``["x"]``."""
        return list(self.schema.spatial_dims) or ["x", "y", "z"][: self.model.unet.dim]

    def _states(self, u0: Any) -> tuple[torch.Tensor, bool, bool]:
        """``u0`` as ``(n, C, *spatial)`` float32 (with a time window ``(n, n_steps_input C, *spatial)``), whether one
        trajectory was given and whether with a channel axis.

        Checked by :mod:`surrogates.serve.inputs`, as the service checks its requests (real numbers only: a
        complex state is refused, not cast)."""
        renames = self._trained_dims(u0) if _is_xarray(u0) else {}
        sent = sent_dim_names(self.schema.source_dims, renames, u0.dims if renames else ())
        with dims_named_as_sent(sent):  # states in the source file's dim names are refused in them
            u0 = self._from_xarray(u0.rename(renames) if renames else u0) if _is_xarray(u0) else np.asarray(u0)
            window_channel_axis = None
            if self.n_steps_input > 1:
                u0, window_channel_axis = self._window(u0)
            arrays, single, channel_axis = split_channels(u0, self.input_channels, self.spatial_dims)
            channel_axis = channel_axis if window_channel_axis is None else window_channel_axis
            variables = [Variable(name, tuple(self.spatial_dims)) for name in self.input_channels]
            layout = check_layout(Path(self.metadata.get("checkpoint") or "").name or "rollout model", variables, arrays, self.spatial_dims)
            check_finite(variables, arrays, layout)
            return torch.from_numpy(stack(variables, arrays, layout)), single, channel_axis

    def _from_xarray(self, u0: Any) -> np.ndarray:
        """An ``xarray.DataArray`` of the states, or a ``Dataset`` of the state variables, in :meth:`rollout`'s numpy
        layout (spatial dims last; a Dataset's variables stacked as the state axis ``C``), after its declared units
        and its spatial coordinates' domain were checked (:func:`~surrogates.serve.inputs.check_xarray_coordinates`,
        as ``Surrogate.predict`` checks its Dataset: ``InputError`` ``wrong_units`` / ``wrong_domain``)."""
        import xarray as xr

        name = Path(self.metadata.get("checkpoint") or "").name or "rollout model"
        unit_dims = [*self.spatial_dims, *(["time"] if self.n_steps_input > 1 else [])]
        check_xarray_coordinates(name, self.schema, u0, self._state_units(u0), unit_dims, self.spatial_dims)
        if isinstance(u0, xr.DataArray):
            return _spatial_last(u0, self.spatial_dims).values
        missing = [v for v in self.state if v not in u0.data_vars]
        if missing:
            raise InputError("missing_input", f"the dataset lacks state variable(s) {missing}; it has {sorted(map(str, u0.data_vars))}")
        return np.stack([_spatial_last(u0[v], self.spatial_dims).values for v in self.state], axis=-len(self.spatial_dims) - 1)

    def _trained_dims(self, u0: Any) -> dict[str, str]:
        """The renaming of states in the dim names of the user's source file (imported data, ``schema.source_dims``)
        to the trained ones (:func:`~surrogates.serve.inputs.trained_dim_names`), as ``Surrogate.predict`` and the
        service read theirs: else their coordinates went unchecked; empty for states in the platform's names."""
        import xarray as xr

        taken = u0.variables if isinstance(u0, xr.Dataset) else u0.coords
        return trained_dim_names(self.schema.source_dims, u0.dims, [*u0.dims, *taken])

    def _state_units(self, u0: Any) -> dict[str, str | None]:
        """The ``units`` attribute of each state variable sent (a DataArray, or a Dataset's state variables), for
        :func:`~surrogates.serve.inputs.check_units`."""
        import xarray as xr

        if isinstance(u0, xr.DataArray):
            # an unnamed array of the only state variable is that variable
            name = u0.name if u0.name is not None or len(self.state) != 1 else self.state[0]
            return {str(name): declared_units(u0.attrs)} if name is not None else {}
        return {v: declared_units(u0[v].attrs) for v in self.state if v in u0.data_vars}

    def _window(self, u0: np.ndarray) -> tuple[np.ndarray, bool]:
        """The first ``n_steps_input`` states ``(n, n_in, C, *spatial)``, ``(n_in, C, *spatial)`` or, with one state
        variable, ``(n, n_in, *spatial)``, ``(n_in, *spatial)``, as the window's channels ``(n, n_in C, *spatial)``
        (``(n_in C, *spatial)`` for one trajectory) for :func:`split_channels`, and whether ``u0`` had a state axis ``C``."""
        d, n_in, c = len(self.spatial_dims), self.n_steps_input, len(self.state)
        if u0.ndim == d + 3 and u0.shape[1:3] == (n_in, c):
            return u0.reshape(u0.shape[0], n_in * c, *u0.shape[3:]), True
        if u0.ndim == d + 2 and u0.shape[:2] == (n_in, c):
            return u0.reshape(n_in * c, *u0.shape[2:]), True
        if c == 1 and u0.ndim in (d + 1, d + 2) and u0.shape[u0.ndim - d - 1] == n_in:
            return u0, False
        spatial = ", ".join(self.spatial_dims)
        raise InputError(
            "wrong_shape", f"the model takes a window of {n_in} states: expected (n, {n_in}, {c}, {spatial}) or ({n_in}, {c}, "
            f"{spatial}) for one trajectory{f', or (n, {n_in}, {spatial})' if c == 1 else ''}; got {tuple(u0.shape)}"
        )

    @torch.no_grad()
    def rollout_tensor(
        self, u0: torch.Tensor, steps: int, params: torch.Tensor | None = None, seed: int | None = 0
    ) -> torch.Tensor:
        """``(n, C, *spatial)`` physical states and ``(n, P)`` physical parameters -> ``(n, steps, C, *spatial)``.

        With a time window ``u0`` is the first ``n_steps_input`` states ``(n, n_steps_input C, *spatial)``
        (:meth:`~surrogates.models.normalized.NormalizedStepper.initial_window`), channels :attr:`input_channels`.

        Raises
        ------
        surrogates.serve.inputs.InputError
            (a ``ValueError``) when the states have another layout or a NaN or infinite value.
        """
        check_channels(u0, self.input_channels, self.spatial_dims)
        return self.rollout_checked(u0, steps, params, seed)

    @torch.no_grad()
    def rollout_checked(
        self, u0: torch.Tensor, steps: int, params: torch.Tensor | None = None, seed: int | None = 0
    ) -> torch.Tensor:
        """:meth:`rollout_tensor` on states already checked (by the service, or by :meth:`rollout`)."""
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        params = None if params is None else params.to(self.device, torch.float32)
        return self.predictor.rollout(u0.to(self.device, torch.float32), int(steps), params, generator)

    def rollout_steps(
        self, u0: torch.Tensor, params: torch.Tensor | None = None, seed: int | None = 0, check: bool = True
    ) -> Iterator[torch.Tensor]:
        """The states after ``u0`` one at a time, each computed when asked for: the ``k``-th equals
        ``rollout_tensor(u0, steps, params, seed)[:, k]`` bit for bit, for any ``steps > k``.

        The service runs a rollout through this, a few steps per job of the model's worker thread, so
        that other requests run in between and a stopped request stops at a step boundary. The iterator
        may be advanced from different threads, one at a time.

        Parameters
        ----------
        u0
            ``(n, C, *spatial)`` physical states (with a time window ``(n, n_steps_input C, *spatial)``).
        params
            ``(n, P)`` physical parameters, the same for every step.
        seed
            Seed of the refinement noise; ``None`` draws from torch's global generator.
        check
            Check ``u0`` (:func:`surrogates.serve.inputs.check_channels`); the service passes ``False`` for
            states its request check has already read.

        Returns
        -------
        Iterator[torch.Tensor]
            Endless; each item ``(n, C, *spatial)`` in physical units.

        Raises
        ------
        surrogates.serve.inputs.InputError
            (a ``ValueError``) when ``u0`` has another layout or a NaN or infinite value (at the call, before any step).
        """
        if check:
            check_channels(u0, self.input_channels, self.spatial_dims)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        # The loop stays in normalized units, as NormalizedStepper.rollout does: decoding and re-encoding
        # between steps would round differently.
        with torch.no_grad():
            state = self.predictor.encode(u0.to(self.device, torch.float32))
            scaled = self.predictor.encode_params(None if params is None else params.to(self.device, torch.float32))
        return self._steps(state, scaled, generator)

    def _steps(
        self, state: torch.Tensor, scaled: torch.Tensor | None, generator: torch.Generator | None
    ) -> Iterator[torch.Tensor]:
        while True:
            # no_grad per step, not around the yield: grad mode is per thread and the next step may run elsewhere
            with torch.no_grad():
                predicted = self.model.predict(state, scaled, generator)
                decoded = [self.predictor.decode(s) for s in self.model.states(predicted)]
                state = self.model.shift_window(state, predicted)
            yield from decoded

    def rollout(self, u0: Any, steps: int, seed: int | None = 0, **params: Any) -> np.ndarray:
        """Roll out ``steps`` steps from initial states (numpy in, numpy out).

        Parameters
        ----------
        u0
            ``(*spatial)`` (one trajectory, one state variable), ``(n, *spatial)``, ``(C, *spatial)`` or ``(n, C, *spatial)``;
            with a time window the first ``n_steps_input`` states: ``(n, n_steps_input, C, *spatial)``,
            ``(n_steps_input, C, *spatial)``, or with one state variable ``(n, n_steps_input, *spatial)``,
            ``(n_steps_input, *spatial)``. Or an ``xarray.DataArray`` in one of these layouts (its spatial dims moved
            last), or a ``Dataset`` of the state variables each ``(n, *spatial)``, ``(*spatial)`` (with a time window
            ``(n, n_steps_input, *spatial)``): its spatial coordinates must cover the trained domain (``InputError``
            ``wrong_domain`` otherwise, as in ``Surrogate.predict``); the answer is numpy, with a state axis ``C``
            for a Dataset. A model trained on data imported from the user's own file (``schema.source_dims``) also
            takes that file's dim names (``run``, ``lon``), as ``Surrogate.predict`` does.
        steps
            Number of predicted states (any number).
        seed
            Seed of the refinement noise (ignored by the deterministic MSE model); ``None`` draws
            from torch's global generator.
        **params
            The conditioning parameters by name (e.g. ``dt=0.8, dx=0.25``), numbers or one per trajectory.

        Returns
        -------
        np.ndarray
            The ``steps`` states after ``u0``: ``(steps, *spatial)``, ``(n, steps, *spatial)`` or
            ``(n, steps, C, *spatial)``, following the layout of ``u0``.
        """
        states, single, channel_axis = self._states(u0)
        out = self.rollout_checked(states, steps, self._params(states.shape[0], params), seed).cpu().numpy()
        if channel_axis:
            return out[0] if single else out
        return out[0, :, 0] if single else out[:, :, 0]

    def rollout_ensemble(self, u0: Any, steps: int, seeds: Sequence[int] = (0, 1, 2), **params: Any) -> np.ndarray:
        """:meth:`rollout` for every seed, stacked on a leading axis: ``(len(seeds), ...)``."""
        return np.stack([self.rollout(u0, steps, seed=seed, **params) for seed in seeds])

    def __repr__(self) -> str:
        return (
            f"RolloutSurrogate(K={self.refinement_steps}, conditioning={self.conditioning}, "
            f"pde={self.schema.pde!r}, checkpoint={self.metadata.get('checkpoint', '')!r})"
        )
