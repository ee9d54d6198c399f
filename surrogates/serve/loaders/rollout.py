"""Rollout checkpoints: one-step models (PDE-Refiner, MSE U-Net) that roll out themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from surrogates.schema import Variable
from surrogates.serve.entries import ModelEntry, ResolutionRule
from surrogates.serve.loaders.common import training_metrics

if TYPE_CHECKING:  # torch is imported only when a checkpoint is loaded
    from surrogates.serve.rollout import RolloutSurrogate


def load_rollout_checkpoint(path: Path, name: str, device: str, surrogate: RolloutSurrogate | None = None) -> ModelEntry:
    """A one-step model (PDE-Refiner, MSE U-Net) through :class:`~surrogates.serve.rollout.RolloutSurrogate`.

    Inputs: the state fields (with a time window, the first ``n_steps_input`` states as fields ``<state>_t<k>``,
    :attr:`RolloutSurrogate.input_channels`), then the conditioning parameters (e.g. ``dt``, ``dx``) as scalars per
    sample; outputs: the next state, or ``steps`` states with a rollout. Every request, rollout or
    not, steps through :meth:`RolloutSurrogate.rollout_steps` with the request's seed (a few steps per
    job of the worker thread), so answers equal ``RolloutSurrogate.rollout(u0, steps, seed=seed, ...)``; such requests are not
    micro-batched (a refiner's noise would then depend on the other requests of its batch).
    ``surrogate``: the file's :class:`RolloutSurrogate` when the caller has loaded it already.
    """
    import torch

    from surrogates.serve.rollout import RolloutSurrogate

    surrogate = surrogate or RolloutSurrogate.load(path, device=device)
    schema = surrogate.schema
    dim = surrogate.model.unet.dim
    spatial = surrogate.spatial_dims
    state_names = surrogate.state
    conditioning = list(surrogate.conditioning)
    if len(spatial) != dim or len(state_names) != surrogate.model.in_channels:
        raise ValueError(f"the checkpoint's schema (state {state_names} on {spatial}) does not match its {dim}D model "
                         f"with {surrogate.model.in_channels} state channel(s)")
    input_names = surrogate.input_channels
    n_state = len(input_names)

    info = {"refinement_steps": surrogate.refinement_steps, "evaluations_per_step": surrogate.evaluations_per_step}

    def roll(x: np.ndarray, seed: int) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
        states = torch.from_numpy(np.ascontiguousarray(x[:, :n_state]))
        params = None
        if conditioning:  # scalars arrive as constant channels: read one point of each
            params = torch.from_numpy(x[:, n_state:].reshape(len(x), len(conditioning), -1)[:, :, 0].copy())
        told = {**info, "seed": int(seed)} if surrogate.stochastic else info
        for step in surrogate.rollout_steps(states, params, seed, check=False):  # ModelEntry.prepare checked x  # (B, C, *spatial) per step
            out = step.cpu().numpy()
            yield {var: out[:, k] for k, var in enumerate(state_names)}, told

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return next(roll(x, 0))

    kind = "PDE-Refiner" if surrogate.stochastic else "MSE-trained one-step model"
    return ModelEntry(
        name=name,
        kind="surrogate",
        source=str(path),
        pde=schema.pde or None,
        description=(
            f"{kind} (K={surrogate.refinement_steps}, {surrogate.evaluations_per_step} network evaluation(s) per step); "
            f"conditioned on {conditioning}; send `steps` for a rollout"
            + (f"; takes the first {surrogate.n_steps_input} states as {input_names}" if surrogate.n_steps_input > 1 else "")
            + ("" if not surrogate.stochastic else " and `seed` for its refinement noise")
        ),
        inputs=[Variable(v, tuple(spatial)) for v in input_names]
        + [Variable(p, (), long_name=f"trajectory parameter {p} (physical units)") for p in conditioning],
        outputs=[Variable(v, tuple(spatial)) for v in state_names],
        spatial_dims=spatial,
        data_schema=schema,
        resolution=ResolutionRule(policy="any", trained=None, min_size=2),
        batchable=False,
        device=str(surrogate.device),
        metrics=training_metrics(path, surrogate.metadata),
        model_config=surrogate.model.init_config(),
        runner=run,
        rollout_runner=roll,
        stochastic=surrogate.stochastic,
    )
