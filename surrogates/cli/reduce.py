"""`surrogates-reduce`: build a reduced basis model offline, or query a saved one online.

    surrogates-reduce pde=thermal_block solver=rb_eim                      # offline: writes <output_dir>/<pde>_<resolution>.rb.h5
    surrogates-reduce mode=query model_path=model.rb.h5 mu=[0.1,0.5,1,0.3]  # online: solution and error bound
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors
from surrogates.solvers.reduced_basis.model import SUFFIX, ReducedModel

MODES = ("offline", "query")


def offline(cfg: DictConfig) -> dict:
    """Instantiate ``cfg.pde`` and ``cfg.solver``, build the reduced model and save it."""
    problem = instantiate(cfg.pde)
    solver = instantiate(cfg.solver)
    model = solver.build(problem)
    path = Path(cfg.model_path) if cfg.model_path else Path(cfg.paths.output_dir) / f"{cfg.name}{SUFFIX}"
    model.save(path)
    meta = model.metadata
    summary = {
        "model_path": str(path),
        "pde": meta.get("pde"),
        "full_dimension": problem.dim,
        "basis_size": model.size,
        "eim_terms": {"operator": model.eim_sizes[0], "rhs": model.eim_sizes[1]},
        "eim_error": model.eim_error,
        "greedy_max_bound": meta["greedy"]["max_errors"][-1],
        "greedy_stop": meta["greedy"]["reason"],
        "offline_seconds": meta["offline_seconds"],
    }
    print(json.dumps(summary, indent=2))
    return summary


def query(cfg: DictConfig) -> dict:
    """Load ``cfg.model_path`` and solve it for ``cfg.mu`` (one parameter or a list of them)."""
    if not cfg.model_path:
        raise ValueError("mode=query needs model_path=<file.rb.h5>")
    if cfg.mu is None:
        raise ValueError("mode=query needs mu=[...] (one value per parameter, or a list of such lists)")
    model = ReducedModel.load(cfg.model_path)
    mus = np.atleast_2d(np.asarray(OmegaConf.to_container(cfg.mu) if OmegaConf.is_config(cfg.mu) else cfg.mu, dtype=float))
    solution = model.solve(mus, estimator=cfg.estimator)
    fields = model.fields(solution.coefficients)
    result = {
        "model_path": str(cfg.model_path),
        "parameters": dict(zip(model.parameter_space.names, mus.T.tolist())),
        "error_bound": solution.bound.tolist(),
        "u_max": fields.reshape(len(mus), -1).max(axis=1).tolist(),
    }
    if cfg.save_fields:
        out = Path(cfg.paths.output_dir) / "query.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, mu=mus, u=fields, error_bound=solution.bound, coefficients=solution.coefficients)
        result["fields"] = str(out)
    print(json.dumps(result, indent=2))
    return result


def reduce(cfg: DictConfig) -> dict:
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    return offline(cfg) if cfg.mode == "offline" else query(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="reduce")
def main(cfg: DictConfig) -> None:
    report_user_errors("surrogates-reduce", reduce, cfg)


if __name__ == "__main__":
    main()
