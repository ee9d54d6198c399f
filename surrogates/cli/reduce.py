"""`surrogates-reduce`: build a reduced basis model offline, or query a saved one online.

    surrogates-reduce pde=thermal_block solver=rb_eim                      # offline: writes <output_dir>/<pde>_<resolution>.rb.h5
    surrogates-reduce mode=query model_path=model.rb.h5 mu=[0.1,0.5,1,0.3]  # online: solution and error bound
    surrogates-reduce mode=logdet solver=power_limits mu=[0.1,0.5,1,0.3]   # log det A(mu) and its bound; writes <output_dir>/<name>.logdet.h5
    surrogates-reduce mode=logdet model_path=<file>.logdet.h5 mu=[...]      # the same from a saved model (nothing rebuilt)
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.arguments import check_integer
from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors
from surrogates.solvers.reduced_basis.model import SUFFIX, ReducedModel
from surrogates.solvers.reduced_basis.power_io import SUFFIX as LOGDET_SUFFIX
from surrogates.solvers.reduced_basis.power_limits import PowerLimitsEIM
from surrogates.solvers.reduced_basis.power_partition import PowerLimitPartition

MODES = ("offline", "query", "logdet")


def offline(cfg: DictConfig) -> dict:
    """Instantiate ``cfg.pde`` and ``cfg.solver``, build the reduced model and save it."""
    problem = instantiate(cfg.pde)
    solver = instantiate(cfg.solver)
    if not callable(getattr(solver, "build", None)):  # e.g. solver=dcdm, a linear solver of the same config group
        raise ValueError(
            f"{type(solver).__name__} builds no reduced model: mode=offline takes solver=rb_eim, "
            "mode=logdet solver=power_limits"
        )
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
    mus = _parameters(cfg.mu)
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


def logdet(cfg: DictConfig) -> dict:
    """Evaluate the power-limit model of ``cfg.pde`` at ``cfg.mu``.

    An existing ``cfg.model_path`` is loaded; otherwise ``solver=power_limits`` builds the model
    (``solver.splits^P`` sub-boxes) and writes it to ``cfg.model_path`` or ``<output_dir>/<name>.logdet.h5``.
    """
    if cfg.mu is None:
        raise ValueError("mode=logdet needs mu=[...] (one value per parameter, or a list of such lists)")
    path = Path(cfg.model_path) if cfg.model_path else None
    if path is not None and path.is_file():
        model = PowerLimitPartition.load(path)
    else:
        solver = instantiate(cfg.solver)
        if not isinstance(solver, PowerLimitsEIM):
            raise ValueError("mode=logdet needs solver=power_limits (or model_path=<existing file>.logdet.h5)")
        model = solver.build_partition(instantiate(cfg.pde))
        path = model.save(path or Path(cfg.paths.output_dir) / f"{cfg.name}{LOGDET_SUFFIX}")
    problem = model.problem
    mus = _parameters(cfg.mu)
    estimate = model.log_det(mus)
    result = {
        "model_path": str(path),
        "parameters": dict(zip(problem.parameter_space.names, mus.T.tolist())),
        "full_dimension": problem.dim,
        "sub_boxes": len(model.models),
        "power_points": model.size,
        "log_det": estimate.value.tolist(),
        "log_det_error_bound": estimate.bound.tolist(),
        "offline_seconds": model.info["offline_seconds"],
    }
    if model.solutions is not None:
        result["solution_error_bound"] = model.solve(mus)[1].tolist()
    print(json.dumps(result, indent=2))
    return result


def _parameters(mu) -> np.ndarray:
    """``mu`` from the command line (one list or a list of lists) as ``(B, P)``."""
    return np.atleast_2d(np.asarray(OmegaConf.to_container(mu) if OmegaConf.is_config(mu) else mu, dtype=float))


def reduce(cfg: DictConfig) -> dict:
    # the PDE checks resolution's range; a word would reach it as a TypeError, a fraction be truncated or misreported
    check_integer("resolution", cfg.resolution)
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    return {"offline": offline, "query": query, "logdet": logdet}[cfg.mode](cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="reduce")
def main(cfg: DictConfig) -> None:
    report_user_errors("surrogates-reduce", reduce, cfg)


if __name__ == "__main__":
    main()
