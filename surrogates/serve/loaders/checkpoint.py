"""The ``.ckpt`` loader: reads a training checkpoint once and hands it to the loader of its kind."""

from __future__ import annotations

from pathlib import Path

from surrogates.serve.entries import ModelEntry
from surrogates.serve.loaders.operator import load_operator_checkpoint
from surrogates.serve.loaders.pointwise import load_pointwise_checkpoint
from surrogates.serve.loaders.rollout import load_rollout_checkpoint


def load_checkpoint(path: Path, name: str, device: str) -> ModelEntry:
    """A neural surrogate from a training checkpoint (``*.ckpt``): an operator through
    :class:`~surrogates.serve.surrogate.Surrogate` (:func:`load_operator_checkpoint`), a one-step model of
    rollouts (:func:`load_rollout_checkpoint`) or a pointwise model (:func:`load_pointwise_checkpoint`)."""
    from surrogates.serve.pointwise import PointwiseSurrogate  # physics-informed coordinate networks (PIG, PINN)
    from surrogates.serve.rollout import RolloutSurrogate, load_surrogate

    surrogate = load_surrogate(path, device=device)  # reads the file once, whichever kind of model it holds
    if isinstance(surrogate, RolloutSurrogate):
        return load_rollout_checkpoint(path, name, device, surrogate)
    if isinstance(surrogate, PointwiseSurrogate):
        return load_pointwise_checkpoint(path, name, device, surrogate)
    return load_operator_checkpoint(path, name, device, surrogate)
