"""`surrogates-evaluate ckpt=...`: metrics JSON and a prediction/target/error figure for a checkpoint.

``ckpt`` is a training checkpoint, or a reduced basis model file (``*.rb.h5``, recognized by its
content), which is then evaluated through the same metrics on the same split. A physics-informed
checkpoint (PIG, PINN) needs no dataset: it is compared with its problem's reference solution.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors
from surrogates.data.dataset import FieldDataset
from surrogates.data.fingerprint import read_fingerprint
from surrogates.data.schema import TIME_DIM, inspect_file
from surrogates.data.shards import split_files
from surrogates.data.space_time import SpaceTimeDataset
from surrogates.data.xarray_datamodule import READER_NAME as XARRAY_READER
from surrogates.data.xarray_datamodule import XarrayDataModule
from surrogates.evaluation.dataset import data_source, evaluate_dataset
from surrogates.metrics import field_relative_l2
from surrogates.plots import plot_comparison, plot_solution
from surrogates.schema import DataSchema
from surrogates.serve.pointwise import PointwiseSurrogate
from surrogates.serve.rollout import RolloutSurrogate, load_surrogate
from surrogates.solvers.reduced_basis.model import is_reduced_model_file


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate ``cfg.ckpt`` on ``cfg.split`` of ``cfg.data_dir`` (default: the training data folder)."""
    if is_reduced_model_file(cfg.ckpt):
        from surrogates.solvers.reduced_basis.predictor import ReducedBasisPredictor

        surrogate = ReducedBasisPredictor.load(cfg.ckpt)
    else:
        surrogate = load_surrogate(cfg.ckpt, device=cfg.device)
        if isinstance(surrogate, RolloutSurrogate):  # one-step models (PDE-Refiner, MSE U-Net): rollout metrics and figures
            from surrogates.cli.evaluate_rollout import evaluate_rollout_checkpoint

            return evaluate_rollout_checkpoint(cfg, surrogate)
        if isinstance(surrogate, PointwiseSurrogate):  # PIG, PINN: against the problem's reference, no dataset
            return evaluate_pointwise(cfg, surrogate)
    schema = surrogate.schema
    data_dir = data_source(cfg.data_dir, schema)
    check_same_problem(surrogate, schema, data_dir, cfg.split)
    dataset = dataset_of(schema, data_dir, cfg.split)
    # the grid spacing and periodic dims of the data, as training computed its rel_h1 (not a unit domain)
    spacing, periodic = schema.grid_spacing(dataset.spatial_shape), schema.periodic_dims(dataset.spatial_shape)
    predict, bounds = surrogate.predict_tensor, None
    if hasattr(surrogate, "last_bounds"):  # a reduced model: keep the certified bound of every sample
        predict, bounds = _keeping_bounds(surrogate)
    result = evaluate_dataset(predict, dataset, batch_size=cfg.batch_size, n_examples=cfg.n_plot, spacing=spacing,
                              periodic=periodic)

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "checkpoint": str(cfg.ckpt),
        "data_dir": str(data_dir),
        "split": cfg.split,
        "pde": schema.pde,
        "metrics": result.summary(),
    }
    if bounds is not None:
        summary["error_bound"] = _bound_summary(*bounds)
    metrics_path = output_dir / "metrics.json"
    metrics_path.write_text(json.dumps(summary, indent=2))
    print(f"relative L2 on {cfg.split}: {summary['metrics']['rel_l2_mean']:.4f} (n={len(dataset)})")
    print(f"metrics: {metrics_path}")
    if int(cfg.n_plot) > 0:  # n_plot=0: metrics only, no figure
        examples, when = plotted_examples(result.examples, dataset.spatial_dims)
        figure = plot_comparison(
            examples["x"],
            examples["y"],
            examples["pred"],
            output_dir / "comparison.png",
            errors=result.per_sample["rel_l2"][: cfg.n_plot],
            **plotted_domain(schema, dataset.spatial_dims, examples["y"].shape[2:]),
            title=f"{schema.pde} {cfg.split}: mean relative L2 {summary['metrics']['rel_l2_mean']:.2%}"
            + (f" (errors over whole fields; drawn{when})" if when else ""),
        )
        print(f"figure:  {figure}")
    return summary["metrics"]


def plotted_examples(examples: dict[str, np.ndarray], spatial_dims: Sequence[str]) -> tuple[dict[str, np.ndarray], str]:
    """The kept samples as :func:`~surrogates.plots.plot_comparison` draws them (1D or 2D fields), and a title suffix.

    A space-time field ``(n, C, time, x, y)`` (a 2D space-time operator, e.g. Navier-Stokes) is drawn at its
    last stored time, ``(n, C, x, y)``: the time the model extrapolates furthest (at the first, an exact
    initial condition makes the error vanish). A field of three spatial dims ``(n, C, x, y, z)`` is drawn as
    its slice through the middle index of the third, named in the suffix (``" at z index 16"``). Other fields
    are returned as they are.
    """
    dims, when = list(spatial_dims), ""
    if len(dims) > 2 and dims[0] == TIME_DIM:
        examples, dims, when = {name: values[:, :, -1] for name, values in examples.items()}, dims[1:], " at the last time"
    if len(dims) > 2:  # 3D: one plane, through the middle of every further axis
        shape = next(iter(examples.values())).shape[4:]
        middles = [n // 2 for n in shape]
        examples = {name: values[(slice(None),) * 4 + tuple(middles)] for name, values in examples.items()}
        when += (", " if when else " at ") + ", ".join(f"{name} index {i}" for name, i in zip(dims[2:], middles))
    return examples, when


def plotted_domain(schema: DataSchema, spatial_dims: Sequence[str], shape: Sequence[int]) -> dict[str, Any]:
    """``extent`` and ``names`` of :func:`~surrogates.plots.plot_comparison` for the fields :func:`plotted_examples` gives.

    The drawn dims are the first ``len(shape)`` of ``spatial_dims`` (after ``time`` where that was cut at its last
    time). ``names`` carry the coordinates' units; ``extent`` (the outer edges of the cells, ``min - h/2`` to
    ``min + (n - 1/2) h``) only when every drawn dim's coordinate knows its extent, else the figure's unit default.
    """
    dims = list(spatial_dims)
    if len(dims) > 2 and dims[0] == TIME_DIM:
        dims = dims[1:]
    dims = dims[: len(shape)]
    coords = [schema.coords.get(d) for d in dims]
    names = tuple(d if c is None or c.units in ("", "1") else f"{d} [{c.units}]" for d, c in zip(dims, coords))
    edges: list[float] = []
    for coord, n in zip(coords, shape):
        step = None if coord is None or coord.min is None else coord.spacing_at(int(n))
        if step is None:
            return {"names": names}
        edges += [coord.min - step / 2, coord.min + (int(n) - 0.5) * step]
    return {"names": names, "extent": tuple(edges)}


def _keeping_bounds(surrogate: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], tuple[list, list]]:
    """A reduced model's ``predict_tensor`` that also keeps each call's error bounds and solution norms."""
    bounds: list[np.ndarray] = []
    norms: list[np.ndarray] = []

    def predict(x: torch.Tensor) -> torch.Tensor:
        fields = surrogate.predict_tensor(x)
        bounds.append(np.asarray(surrogate.last_bounds, dtype=np.float64))
        norms.append(np.asarray(surrogate.last_norms, dtype=np.float64))
        return fields

    return predict, (bounds, norms)


def _bound_summary(bounds: list[np.ndarray], norms: list[np.ndarray]) -> dict[str, Any]:
    """The reduced model's a posteriori bounds over the split: ``Delta(mu) >= ||u_M - u_N||_X`` (absolute) and
    ``Delta / ||u_N||_X`` (relative), mean and max; ``u_M`` solves the EIM-approximated system, and ``X`` is the
    discrete H^1_0 semi-norm (docs/reduced_basis.md)."""
    delta, norm = np.concatenate(bounds), np.concatenate(norms)
    relative = np.divide(delta, norm, out=np.full_like(delta, np.inf), where=norm > 0)
    return {
        "norm": "X (discrete H^1_0 semi-norm) of u_M - u_N, u_M the solution of the EIM-approximated system",
        "mean": float(delta.mean()), "max": float(delta.max()),
        "relative_mean": float(relative.mean()), "relative_max": float(relative.max()),
        "n_samples": int(delta.size),
    }


# settings of a reduced model's problem that fix its discrete operator (DiffusionProblem.config); the grid is
# checked by the predictor, and solver tolerances or parameter ranges do not change the discrete problem
DISCRETE_PROBLEM_KEYS = ("discretization", "fd_rule")


def check_same_problem(surrogate: object, schema: DataSchema, data_dir: str | Path, split: str) -> None:
    """Refuse a split written by another PDE (or, for a reduced model, another discretization) than the model's.

    Variable names alone do not tell problems apart (Darcy and the thermal block both map ``a`` to ``u``),
    so without this check a model would be scored against targets of another problem and the metrics
    would carry the model's PDE name. Files that record no PDE (a user's own files) are not checked.

    Raises
    ------
    ValueError
        Naming the model's and the data's PDE, or the discretization setting that differs.
    """
    if schema.reader is not None and schema.reader.get("name") == XARRAY_READER:
        return
    files = split_files(data_dir, split)
    data_pde = str(inspect_file(files[0], check_finite=False).attrs.get("pde") or "") if files else ""
    if schema.pde and data_pde and data_pde != schema.pde:
        raise ValueError(
            f"{files[0]} holds {data_pde!r} data but the model is a {schema.pde!r} model; pass the data_dir of its PDE"
        )
    problem = getattr(getattr(surrogate, "model", None), "problem", None)  # reduced models only
    if problem is None or not files:
        return
    data_node = (read_fingerprint(files[0]) or {}).get("pde") or {}
    model_node = problem.config()
    for key in DISCRETE_PROBLEM_KEYS:
        if key == "fd_rule" and model_node.get("discretization") != "fd":
            continue  # P1 elements have no face rule
        # null: the problem class's default, which the data node does not spell out
        if data_node.get(key) is not None and model_node.get(key) is not None and data_node[key] != model_node[key]:
            raise ValueError(
                f"{files[0]} was solved with {key}={data_node[key]!r}, the reduced model with {key}={model_node[key]!r}: "
                "it would be scored against the solution of another discrete problem"
            )


def dataset_of(schema: DataSchema, data_dir: str | Path, split: str) -> FieldDataset:
    """The split's samples as the training run read them: the same variables, time indices and windows."""
    if schema.reader is not None and schema.reader.get("name") == XARRAY_READER:  # trained with data=xarray
        return XarrayDataModule.from_schema(schema, data_dir)._load(split)
    files = split_files(data_dir, split)
    if schema.window is not None:  # time windows: the stored variables, the channels named after them
        window = schema.window
        return FieldDataset(
            files, window["inputs"], window["targets"], n_steps_input=window["n_steps_input"],
            n_steps_output=window["n_steps_output"],
        )
    if schema.time_stride is not None:  # a space-time operator: whole trajectories
        return SpaceTimeDataset(
            files, list(schema.inputs), list(schema.targets), input_time=schema.input_time or 0,
            time_stride=schema.time_stride, n_times=schema.n_times,
        )
    return FieldDataset(
        files, inputs=list(schema.inputs), targets=list(schema.targets),
        input_time=schema.input_time, target_time=schema.target_time,
    )


def evaluate_pointwise(cfg: DictConfig, surrogate: PointwiseSurrogate) -> dict[str, float]:
    """A physics-informed network (PIG, PINN) against its problem's reference solution on a grid.

    The grid is the one the training task tested on (the checkpoint's ``eval_resolution``; override
    with ``eval_resolution=201``), so ``rel_l2`` equals the run's ``test/rel_l2`` up to round-off.
    Writes ``metrics.json`` (relative L2, max abs error) and the solution figure ``physics_informed.png``.
    """
    from surrogates.tasks.physics_informed import FIGURE_NAME

    problem = surrogate.problem
    if problem is None:
        raise ValueError(f"{cfg.ckpt} records no physics problem: there is no reference to evaluate it against")
    resolution = cfg.get("eval_resolution") or surrogate.schema.eval_resolution or 101
    resolution = resolution if isinstance(resolution, int) else [int(n) for n in resolution]
    reference = problem.reference(resolution)
    prediction = surrogate.predict(reference.points())  # (M,) on the grid's points, in C order of reference.values
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "rel_l2": field_relative_l2(prediction, reference.values.reshape(-1)),
        "max_abs_error": float(np.abs(prediction.astype(np.float64) - reference.values.reshape(-1)).max()),
        "n_points": int(prediction.size),
    }
    summary = {
        "checkpoint": str(cfg.ckpt), "kind": "pointwise", "pde": problem.name, "problem": problem.config(),
        "domain": surrogate.domain, "resolution": resolution, "reference": reference.method, "metrics": metrics,
    }
    metrics_path = output_dir / "metrics.json"
    metrics_path.write_text(json.dumps(summary, indent=2))
    title = f"{problem.name}: {type(surrogate.net).__name__}"
    figure = plot_solution(surrogate.net, reference, prediction, output_dir / FIGURE_NAME, title=title, names=tuple(surrogate.coordinates))
    print(f"relative L2 against the {reference.method} reference on {reference.shape}: {metrics['rel_l2']:.4e}")
    print(f"metrics: {metrics_path}")
    if figure is not None:
        print(f"figure:  {figure}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    report_user_errors("surrogates-evaluate", evaluate, cfg)


if __name__ == "__main__":
    main()
