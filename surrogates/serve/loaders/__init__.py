"""Loaders: one per kind of model file (and one for classical solvers), each building a
:class:`~surrogates.serve.entries.ModelEntry`.

- :mod:`~surrogates.serve.loaders.checkpoint`: ``*.ckpt``, read once and handed to the loader of its kind:
  :mod:`~surrogates.serve.loaders.operator` (neural operators), :mod:`~surrogates.serve.loaders.rollout`
  (one-step models that roll out), :mod:`~surrogates.serve.loaders.pointwise` (PIG, PINN);
- :mod:`~surrogates.serve.loaders.reduced`: ``*.rb.h5`` reduced-basis models;
- :mod:`~surrogates.serve.loaders.solver`: a PDE's reference solver from its ``_target_`` node.

torch is imported only when a checkpoint is loaded.
"""

from surrogates.serve.loaders.checkpoint import load_checkpoint
from surrogates.serve.loaders.operator import load_operator_checkpoint
from surrogates.serve.loaders.pointwise import load_pointwise_checkpoint
from surrogates.serve.loaders.reduced import load_reduced_model
from surrogates.serve.loaders.rollout import load_rollout_checkpoint
from surrogates.serve.loaders.solver import solver_entry

__all__ = [
    "load_checkpoint",
    "load_operator_checkpoint",
    "load_pointwise_checkpoint",
    "load_reduced_model",
    "load_rollout_checkpoint",
    "solver_entry",
]
