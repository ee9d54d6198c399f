"""OmegaConf resolvers used by the configs (registered when `surrogates.cli` is imported)."""

import os

from omegaconf import OmegaConf


OPTUNA_DIRECTIONS = {"min": "minimize", "max": "maximize"}
"""A checkpoint callback's ``mode`` -> the Optuna direction that optimizes the same way."""


def register_resolvers() -> None:
    """Register ``${len:...}``, ``${channels:names,steps}`` (a model's channel counts from the data's
    variables and time windows), ``${cwd:}`` and, for Optuna sweeps, ``${trial_number:...}`` and ``${resumed_seed:...}``.

    ``${cwd:}`` is the working directory; unlike ``${hydra:runtime.cwd}`` it also resolves while a
    multirun computes its sweep directory, before Hydra's runtime config exists.
    """
    OmegaConf.register_new_resolver("len", lambda value: len(value), replace=True)
    # channels of a model: one per variable, times the window length with time windows (data.n_steps_input)
    OmegaConf.register_new_resolver("channels", lambda names, steps=None: len(names) * (int(steps) if steps else 1), replace=True)
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
    # Optuna sweeps: ${trial_number:${hydra.job.num}} is the job's trial in a resumed study (surrogates.cli.sweeps)
    OmegaConf.register_new_resolver("trial_number", lambda num: int(os.environ.get("SURROGATES_OPTUNA_TRIAL_OFFSET", "0")) + int(num), replace=True)
    # ${resumed_seed:${seed}}: the sampler's seed, shifted by the trials a resumed study holds; the same seed again
    # would draw the first sweep's random (start-up) trials once more, repeating their parameters
    # ${optuna_direction:min} = minimize: an Optuna search optimizes as the checkpoint callback keeps the best
    OmegaConf.register_new_resolver("optuna_direction", lambda mode: OPTUNA_DIRECTIONS[str(mode)], replace=True)
    OmegaConf.register_new_resolver("resumed_seed", lambda seed: int(seed) + int(os.environ.get("SURROGATES_OPTUNA_TRIAL_OFFSET", "0")), replace=True)


register_resolvers()
