"""`data=xarray`: training on NetCDF-4 files written by xarray, with the user's names, and back."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from surrogates import Surrogate
from surrogates.cli.evaluate import evaluate
from surrogates.cli.train import train
from surrogates.data.dataset import FieldDataset
from surrogates.data.foreign import ForeignLayout, inspect_foreign
from surrogates.data.schema import DatasetFileError
from surrogates.data.xarray_datamodule import XarrayDataModule, split_indices

N, S = 40, 12


def _darcy_like(path: Path, sample_dim: str = "n") -> Path:
    """A user's file: a(n, x, y) -> u(n, x, y) plus a scalar nu(n) and a vector field v(n, x, y, component)."""
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 2.0, S)  # a domain of length 2: spacing 2 / (S - 1)
    a = rng.uniform(1.0, 3.0, size=(N, S, S)).astype(np.float32)
    u = (np.sin(np.pi * x)[None, :, None] * a.mean(axis=(1, 2))[:, None, None] * np.ones((1, 1, S))).astype(np.float32)
    v = rng.normal(size=(N, S, S, 2)).astype(np.float32)
    ds = xr.Dataset(
        {
            "a": ((sample_dim, "x", "y"), a, {"units": "1", "long_name": "conductivity"}),
            "u": ((sample_dim, "x", "y"), u),
            "nu": ((sample_dim,), rng.uniform(0.1, 1.0, N).astype(np.float32)),
            "v": ((sample_dim, "x", "y", "component"), v),
        },
        coords={"x": ("x", x, {"units": "m"}), "y": ("y", x), "component": ["x", "y"]},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def test_split_indices_are_disjoint_complete_and_seeded():
    parts = split_indices(50, 0.1, 0.2, seed=3)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [35, 5, 10]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(50))
    again = split_indices(50, 0.1, 0.2, seed=3)
    assert all(np.array_equal(parts[s], again[s]) for s in parts)
    assert not np.array_equal(split_indices(50, 0.1, 0.2, seed=4)["test"], parts["test"])
    with pytest.raises(ValueError, match="test_fraction must be in"):
        split_indices(10, 0.1, 1.0, seed=0)
    with pytest.raises(ValueError, match="leave no training sample"):
        split_indices(3, 0.5, 0.4, seed=0)


def test_foreign_files_read_with_renamed_dims_components_and_scalars(tmp_path):
    path = _darcy_like(tmp_path / "user.nc")
    layout = ForeignLayout(sample_dim="n")
    info = inspect_foreign(path, layout)
    assert info.n_samples == N and set(info.variables) == {"a", "u", "nu", "v_x", "v_y"}
    assert info.variables["v_y"].dims == ("sample", "x", "y") and info.variables["v_y"].attrs["component"] == "y"
    dataset = FieldDataset([path], ["a", "nu", "v_x", "v_y"], ["u"], layout=layout, indices=[5, 2])
    raw = xr.open_dataset(path, engine="h5netcdf")
    try:
        item = dataset[1]  # the sample numbered 2 in the file
        np.testing.assert_array_equal(item["x"][0].numpy(), raw["a"].values[2])
        np.testing.assert_array_equal(item["x"][1].numpy(), np.full((S, S), raw["nu"].values[2]))
        np.testing.assert_array_equal(item["x"][3].numpy(), raw["v"].values[2, :, :, 1])
        np.testing.assert_array_equal(item["y"][0].numpy(), raw["u"].values[2])
    finally:
        raw.close()
    assert len(dataset) == 2 and dataset.coords["x"][-1] == 2.0


def test_foreign_files_that_do_not_fit_are_refused_naming_the_problem(tmp_path):
    path = _darcy_like(tmp_path / "user.nc")
    with pytest.raises(DatasetFileError, match="no variable has the sample dim 'sample'.*set data.sample_dim"):
        inspect_foreign(path, ForeignLayout())
    transposed = tmp_path / "transposed.nc"
    xr.open_dataset(path, engine="h5netcdf").load().transpose("x", "n", "y", "component").to_netcdf(transposed, engine="h5netcdf")
    with pytest.raises(DatasetFileError, match="the sample dim 'n' must come first"):
        inspect_foreign(transposed, ForeignLayout(sample_dim="n"))
    classic = tmp_path / "classic.nc"
    xr.Dataset({"a": (("n", "x"), np.zeros((2, 3)))}).to_netcdf(classic, engine="scipy", format="NETCDF3_64BIT")
    with pytest.raises(DatasetFileError, match="not a readable NetCDF-4/HDF5 file.*surrogates-import"):
        inspect_foreign(classic, ForeignLayout(sample_dim="n"))
    bad = xr.open_dataset(path, engine="h5netcdf").load()
    bad["a"][3, 1, 1] = np.nan
    nan_path = tmp_path / "nan.nc"
    bad.to_netcdf(nan_path, engine="h5netcdf")
    with pytest.raises(DatasetFileError, match="'a' contains NaN or inf at sample 3"):
        XarrayDataModule(["a"], ["u"], path=nan_path, sample_dim="n").setup("fit")
    # the available variables are listed with the file's own dim names (n, not the 'sample' it is read as)
    with pytest.raises(DatasetFileError, match=r"missing variable\(s\) \['w'\]; available: a \(n, x, y\), nu \(n\)"):
        XarrayDataModule(["w"], ["u"], path=path, sample_dim="n").setup("fit")


def test_train_evaluate_and_predict_on_a_users_file(compose_cfg, tmp_path):
    path = _darcy_like(tmp_path / "user.nc")
    cfg = compose_cfg(
        "train",
        ["data=xarray", f"data.path={path}", "data.inputs=[a,nu,v_x,v_y]", "data.targets=[u]", "data.sample_dim=n",
         "data.batch_size=8", "model.width=8", "model.modes=4", "trainer.max_epochs=2",
         "trainer.enable_progress_bar=false"],
    )
    results = train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    # the split recorded in the checkpoint: evaluation reads the same test samples with the file's grid spacing
    summary = evaluate(compose_cfg("evaluate", [f"ckpt={best}"]))
    assert summary["n_samples"] == 4  # round(0.1 * 40)
    for name in ("rel_l2", "rel_h1"):
        assert summary[f"{name}_mean"] == pytest.approx(results[f"test/{name}"], rel=1e-4)
    surrogate = Surrogate.load(best)
    assert surrogate.schema.grid_spacing() == pytest.approx([2 / (S - 1)] * 2, rel=1e-6)
    assert surrogate.schema.variables["a"].long_name == "conductivity"
    # predict on the user's own layout: their sample dim, the number per sample and the vector field as stored
    user = xr.open_dataset(path, engine="h5netcdf").load()
    out = surrogate.predict(user.isel(n=slice(0, 3)))
    assert out["u"].dims == ("n", "x", "y") and out["u"].shape == (3, S, S)
    np.testing.assert_array_equal(out["x"].values, user["x"].values)
    np.testing.assert_array_equal(out["u"].values, surrogate.predict(_stacked(user, 3))[:, 0])
    with pytest.raises(ValueError, match=r"variable 'nu' has dims \('n', 'x'\); expected \('n'\)"):
        surrogate.predict(user.isel(n=slice(0, 3)).assign(nu=user["a"].isel(n=slice(0, 3), y=0)))
    json.dumps(surrogate.schema.to_dict())
    _serve_the_users_layout(best, user, surrogate)


def _serve_the_users_layout(best: Path, user: xr.Dataset, surrogate: Surrogate) -> None:
    """The service takes a NetCDF body with the user's sample dim and answers with it."""
    import shutil

    import httpx

    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.registry import Registry
    from tests.serve.conftest import LiveServer

    models = best.parent / "served"
    models.mkdir()
    shutil.copy(best, models / "user.ckpt")
    body = xr.Dataset({"a": user["a"][:2], "nu": user["nu"][:2], "v_x": user["v"][:2, ..., 0].drop_vars("component"),
                       "v_y": user["v"][:2, ..., 1].drop_vars("component")}).to_netcdf(engine="h5netcdf")
    with LiveServer(create_app(Registry.from_folder(models), ServeSettings())) as server:
        info = httpx.get(f"{server.url}/v1/models/user").json()
        assert [v["name"] for v in info["inputs"]] == ["a", "nu", "v_x", "v_y"] and info["data_schema"]["reader"] is None
        answer = httpx.post(f"{server.url}/v1/models/user/predict", content=bytes(body),
                            headers={"content-type": "application/x-netcdf"}, timeout=60)
    assert answer.status_code == 200, answer.text
    out = xr.open_dataset(io.BytesIO(answer.content), engine="h5netcdf")
    assert out["u"].dims == ("n", "x", "y")
    np.testing.assert_array_equal(out["u"].values, surrogate.predict(_stacked(user, 2))[:, 0])


def _stacked(user: xr.Dataset, n: int) -> np.ndarray:
    """The first n samples of the user's file as the channels a, nu (constant), v_x, v_y."""
    nu = np.broadcast_to(user["nu"].values[:n, None, None], (n, S, S))
    return np.stack([user["a"].values[:n], nu, user["v"].values[:n, ..., 0], user["v"].values[:n, ..., 1]], axis=1)


def test_files_per_split_without_fractions(tmp_path):
    train_file = _darcy_like(tmp_path / "train.nc", sample_dim="sample")
    test_file = _darcy_like(tmp_path / "test.nc", sample_dim="sample")
    dm = XarrayDataModule(["a"], ["u"], train=train_file, test=test_file, batch_size=8)
    dm.setup("fit")
    assert dm.val_dataloader() == [] and len(dm.train_set) == N
    dm.setup("test")
    assert len(dm.datasets["test"]) == N
    with pytest.raises(ValueError, match="give data.path"):
        XarrayDataModule(["a"], ["u"])


@pytest.mark.parametrize("experiment", ["burgers_fno", "darcy_fno_demo"])
def test_an_experiment_with_data_xarray_reads_the_users_file(compose_cfg, tmp_path, experiment):
    # an experiment sets data.data_dir (its dataset folder); data=xarray reads data.path and ignores that folder
    from hydra.utils import instantiate

    path = _darcy_like(tmp_path / "user.nc")
    cfg = compose_cfg("train", [f"experiment={experiment}", "data=xarray", f"data.path={path}", "data.sample_dim=n",
                                "data.inputs=[a]", "data.targets=[u]"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert dm.path == path and len(dm.train_set) == 32


def test_a_one_state_model_predicts_from_the_users_trajectories(compose_cfg, tmp_path):
    # u(run, t, x) trained as u(t=0) -> u(t=-1): predict takes the file's layout, its time dim named `t`
    rng = np.random.default_rng(0)
    u = rng.normal(size=(20, 4, 8)).astype(np.float32)
    path = tmp_path / "traj.nc"
    xr.Dataset({"u": (("run", "t", "x"), u)}, coords={"t": ("t", [0.0, 0.5, 1.0, 1.5], {"units": "s"})}).to_netcdf(
        path, engine="h5netcdf")
    cfg = compose_cfg("train", [
        "data=xarray", f"data.path={path}", "data.sample_dim=run", "data.time_dim=t", "data.inputs=[u]",
        "data.targets=[u]", "data.input_time=0", "data.target_time=-1", "model.dim=1", "model.width=4", "model.modes=2",
        "data.batch_size=8", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    train(cfg)
    surrogate = Surrogate.load(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt")
    user = xr.open_dataset(path, engine="h5netcdf").load()
    out = surrogate.predict(user.isel(run=slice(0, 3)))
    assert out["u"].dims == ("run", "x")
    np.testing.assert_array_equal(out["u"].values, surrogate.predict(u[:3, 0]))  # the state at t = 0
    with pytest.raises(ValueError, match=r"the dataset lacks input variable\(s\) \['u'\]; it has \['v'\]"):
        surrogate.predict(user.rename(u="v"))
