"""`surrogates-reduce`: offline build -> save -> load -> query, and `surrogates-evaluate` on a reduced model."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest

from surrogates.cli.evaluate import evaluate
from surrogates.cli.reduce import reduce
from surrogates.data.generation import generate_dataset
from surrogates.data.xarray_view import open_split
from surrogates.pdes.thermal_block import ThermalBlock
from surrogates.solvers.reduced_basis import ReducedModel

SMALL = [
    "resolution=17",
    "solver.eim_training_size=40",
    "solver.eim_check_size=10",
    "solver.training_set=grid",
    "solver.training_size=3",
    "solver.max_basis_size=15",
    "solver.progress=false",
]


@pytest.fixture(scope="module")
def thermal_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "thermal_block_17"
    generate_dataset(ThermalBlock(resolution=17), root, {"test": 12}, seed=0, chunk_size=6, progress=False)
    return root


def test_offline_then_query(compose_cfg, tmp_path, capsys):
    path = tmp_path / "tb.rb.h5"
    summary = reduce(compose_cfg("reduce", ["pde=thermal_block", "solver=rb_eim", f"model_path={path}", *SMALL]))
    assert path.is_file() and summary["basis_size"] == 15
    assert summary["eim_terms"] == {"operator": 4, "rhs": 1}
    model = ReducedModel.load(path)
    assert model.metadata["pde"] == "thermal_block" and model.size == 15

    result = reduce(compose_cfg("reduce", ["mode=query", f"model_path={path}", "mu=[0.1,0.5,1.0,0.3]"]))
    assert len(result["error_bound"]) == 1 and 0 < result["error_bound"][0] < 1.0
    saved = np.load(result["fields"])
    assert saved["u"].shape == (1, 17, 17)
    direct = ThermalBlock(resolution=17).solve_full(np.array([0.1, 0.5, 1.0, 0.3]))
    error = np.linalg.norm(saved["u"][0, 1:-1, 1:-1].ravel() - direct) / np.linalg.norm(direct)
    assert error < 1e-2
    printed = capsys.readouterr().out
    assert "error_bound" in printed

    several = reduce(compose_cfg("reduce", ["mode=query", f"model_path={path}", "mu=[[0.1,0.5,1.0,0.3],[1,1,1,1]]"]))
    assert len(several["error_bound"]) == 2


def test_query_errors_are_clear(compose_cfg, tmp_path):
    with pytest.raises(ValueError, match="model_path"):
        reduce(compose_cfg("reduce", ["mode=query", "mu=[1]"]))
    with pytest.raises(ValueError, match="mode must be"):
        reduce(compose_cfg("reduce", ["mode=online"]))


def test_evaluate_scores_a_reduced_model_on_the_test_split(compose_cfg, tmp_path, thermal_data):
    path = tmp_path / "tb.rb.h5"
    reduce(compose_cfg("reduce", ["pde=thermal_block", f"model_path={path}", *SMALL]))
    metrics = evaluate(compose_cfg("evaluate", [f"ckpt={path}", f"data_dir={thermal_data}", "n_plot=2"]))
    assert metrics["n_samples"] == 12
    assert metrics["rel_l2_max"] < 1e-2  # float32 storage of the data bounds what can be seen
    out = tmp_path / "run"
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["pde"] == "thermal_block"
    assert (out / "comparison.png").is_file()
    # the certified bounds of the split's samples: those of the model's own solve for the stored parameters
    model = ReducedModel.load(path)
    data = open_split(thermal_data, "test")
    mus = np.stack([data[name].values.astype(np.float64) for name in model.parameter_space.names], axis=1)
    data.close()
    direct = model.solve(mus)
    relative = direct.bound / np.linalg.norm(direct.coefficients, axis=1)  # the basis is X-orthonormal
    bound = summary["error_bound"]
    assert bound["n_samples"] == 12 and bound["norm"].startswith("X")
    # the same float64 solves of the same parameters (float32 in the file either way): round-off of a batched solve
    np.testing.assert_allclose([bound["mean"], bound["max"]], [direct.bound.mean(), direct.bound.max()], rtol=1e-9)
    np.testing.assert_allclose([bound["relative_mean"], bound["relative_max"]], [relative.mean(), relative.max()], rtol=1e-9)


def test_evaluate_refuses_a_model_on_another_grid(compose_cfg, tmp_path, thermal_data):
    path = tmp_path / "tb9.rb.h5"
    reduce(compose_cfg("reduce", ["pde=thermal_block", f"model_path={path}", *SMALL, "resolution=9"]))
    with pytest.raises(ValueError, match="grid"):
        evaluate(compose_cfg("evaluate", [f"ckpt={path}", f"data_dir={thermal_data}"]))


def test_evaluate_refuses_data_of_another_discretization(compose_cfg, tmp_path, thermal_data):
    """P1 targets on the same nodes differ from the FD solution by the discretization error: no score of the model."""
    p1_data = tmp_path / "thermal_block_17_p1"
    generate_dataset(ThermalBlock(resolution=17, discretization="p1"), p1_data, {"test": 2}, seed=0, progress=False)
    path = tmp_path / "tb.rb.h5"
    reduce(compose_cfg("reduce", ["pde=thermal_block", f"model_path={path}", *SMALL]))
    with pytest.raises(ValueError, match="discretization='p1'.*discretization='fd'"):
        evaluate(compose_cfg("evaluate", [f"ckpt={path}", f"data_dir={p1_data}"]))
    assert evaluate(compose_cfg("evaluate", [f"ckpt={path}", f"data_dir={thermal_data}", "n_plot=1"]))["n_samples"] == 12


def test_evaluate_refuses_data_of_another_pde(compose_cfg, darcy_checkpoint, thermal_data):
    """Thermal-block data hold ``a`` and ``u`` too, so only the files' PDE tells them from Darcy's."""
    with pytest.raises(ValueError, match="'thermal_block' data but the model is a 'darcy' model"):
        evaluate(compose_cfg("evaluate", [f"ckpt={darcy_checkpoint}", f"data_dir={thermal_data}"]))


def test_logdet_mode(compose_cfg, capsys):
    """`mode=logdet solver=power_limits`: log det A(mu) within its bound of the exact (sparse LU) value."""
    from surrogates.solvers.logdet import sparse_logdet

    overrides = ["mode=logdet", "solver=power_limits", "resolution=9", "solver.degree=2", "solver.progress=false"]
    result = reduce(compose_cfg("reduce", [*overrides, "mu=[[0.1,0.5,1.0,0.3],[1,1,1,1]]"]))
    assert result["power_points"] == 15 and len(result["log_det"]) == 2
    for mu, value, bound in zip([[0.1, 0.5, 1.0, 0.3], [1, 1, 1, 1]], result["log_det"], result["log_det_error_bound"]):
        assert abs(value - sparse_logdet(ThermalBlock(resolution=9).operator(np.array(mu)))) <= bound
    assert len(result["solution_error_bound"]) == 2 and "log_det_error_bound" in capsys.readouterr().out
    with pytest.raises(ValueError, match="needs mu"):
        reduce(compose_cfg("reduce", overrides))
    with pytest.raises(ValueError, match="solver=power_limits"):
        reduce(compose_cfg("reduce", ["mode=logdet", "mu=[1,1,1,1]", "resolution=9"]))


def test_logdet_mode_writes_and_reloads_the_model(compose_cfg, tmp_path):
    """The model goes to model_path (or the run folder); a second call loads it and gives the same numbers."""
    path = tmp_path / "tb.logdet.h5"
    overrides = ["mode=logdet", "solver=power_limits", "resolution=9", "solver.degree=2", "solver.splits=2",
                 "solver.progress=false", "solver.with_inverse=false", "mu=[0.1,0.5,1.0,0.3]"]
    built = reduce(compose_cfg("reduce", [*overrides, f"model_path={path}"]))
    assert path.is_file() and built["model_path"] == str(path) and built["sub_boxes"] == 16
    loaded = reduce(compose_cfg("reduce", ["mode=logdet", f"model_path={path}", "mu=[0.1,0.5,1.0,0.3]"]))
    assert loaded["log_det"] == built["log_det"] and loaded["log_det_error_bound"] == built["log_det_error_bound"]
    run = reduce(compose_cfg("reduce", overrides))
    assert Path(run["model_path"]).is_file() and run["model_path"].endswith("thermal_block_9.logdet.h5")
