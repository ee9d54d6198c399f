"""Classical solvers as models: a PDE's reference solve behind the same requests as its surrogates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from surrogates.serve.entries import ModelEntry, ResolutionRule


def solver_entry(name: str, pde_config: Any, description: str = "") -> ModelEntry:
    """A PDE's reference solver as a model: ``pde_config`` is a ``_target_`` node (as in ``conf/pde/``) or a PDE.

    The solver takes the PDE's input variables and answers its targets. When the PDE has a
    ``resolution`` argument the solver takes any square grid (a PDE object per grid size is built
    from the node); otherwise only the configured grid.
    """
    pde = _instantiate(pde_config)
    variables = pde.variables()
    inputs = [variables[v] for v in pde.inputs]
    outputs = [variables[v] for v in pde.targets]
    field_dims = {var.dims for var in inputs + outputs if var.dims}
    if len(field_dims) != 1 or "time" in next(iter(field_dims)):
        raise ValueError(f"the service serves solvers of stationary PDEs with fields on one grid; {pde.name!r} has dims {sorted(field_dims)}")
    spatial = list(next(iter(field_dims)))
    coords = pde.coords()
    trained = tuple(len(coords[d].values) for d in spatial)
    configurable = not _is_object(pde_config) and "resolution" in pde_config and hasattr(pde, "resolution")
    resolution = (
        ResolutionRule(policy="any", trained=trained, min_size=3, equal_sizes=True)
        if configurable
        else ResolutionRule(policy="fixed", trained=trained)
    )
    pdes = {trained[0]: pde}

    def pde_for(shape: tuple[int, ...]) -> Any:
        if shape[0] not in pdes:
            if len(pdes) >= 8:  # a few grids stay built
                pdes.pop(next(k for k in pdes if k != trained[0]))
            pdes[shape[0]] = _instantiate(pde_config, resolution=shape[0])
        return pdes[shape[0]]

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        problem = pde_for(tuple(x.shape[2:]))
        request = {}
        for k, var in enumerate(inputs):
            channel = x[:, k].astype(np.float64)
            request[var.name] = channel if var.dims else channel.reshape(len(x), -1)[:, 0]
        solution, report = problem.solve(request)
        out = {var.name: np.asarray(solution[var.name], dtype=np.float32) for var in outputs}
        return out, {"solver": {**report.summary(), "iterations": list(report.iterations), "residuals": list(report.residuals)}}

    target = pde_config.get("_target_") if not _is_object(pde_config) else f"{type(pde).__module__}.{type(pde).__qualname__}"
    return ModelEntry(
        name=name,
        kind="solver",
        source=str(target),
        pde=pde.name,
        description=description or f"reference solver of {pde.name!r} ({target})",
        inputs=inputs,
        outputs=outputs,
        spatial_dims=spatial,
        resolution=resolution,
        batchable=False,
        device="cpu",
        model_config=_plain(pde_config) if not _is_object(pde_config) else None,
        runner=run,
    )


def _is_object(config: Any) -> bool:
    return not isinstance(config, Mapping) and not hasattr(config, "_metadata")


def _target_of(config: Any) -> Any:
    return config.get("_target_", "?") if isinstance(config, Mapping) else type(config).__name__


def _instantiate(config: Any, **overrides: Any) -> Any:
    if _is_object(config):
        return config
    from hydra.utils import instantiate

    return instantiate(config, **overrides)


def _plain(config: Any) -> Any:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(config)
