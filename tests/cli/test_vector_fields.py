"""Vector fields in the user's layout: ``data.inputs=[v]`` trains on its components, answers come back as ``v``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from surrogates import Surrogate
from surrogates.cli.train import train
from surrogates.data.dataset import FieldDataset
from surrogates.data.fields import expand_field_names
from surrogates.data.foreign import ForeignLayout
from surrogates.schema import Component, DataSchema
from tests.cli.test_xarray_data import S, _darcy_like


def test_a_field_name_stands_for_its_components_in_stored_order(tmp_path):
    path = _darcy_like(tmp_path / "user.nc")
    dataset = FieldDataset([path], ["a", "v"], ["v"], layout=ForeignLayout(sample_dim="n"))
    assert dataset.inputs == ["a", "v_x", "v_y"] and dataset.targets == ["v_x", "v_y"]
    raw = xr.open_dataset(path, engine="h5netcdf")
    try:
        item = dataset[4]
        np.testing.assert_array_equal(item["x"][2].numpy(), raw["v"].values[4, :, :, 1])
        np.testing.assert_array_equal(item["y"][0].numpy(), raw["v"].values[4, :, :, 0])
    finally:
        raw.close()
    # a variable named like a field wins; unknown names are left for the caller to report
    assert expand_field_names(["v_x", "w"], dataset.infos[0].variables) == ["v_x", "w"]


def test_schema_records_components_and_reads_them_back():
    schema = DataSchema.from_dict({"variables": {"v_x": ["sample", "x"]},
                                   "variable_attrs": {"v_x": {"component": {"field": "v", "label": "x", "dim": "c"}}}})
    assert schema.variables["v_x"].component == Component("v", "x", "c")
    assert DataSchema.from_dict(schema.to_dict()) == schema
    with pytest.raises(ValueError, match="component must name a field"):
        DataSchema.from_dict({"variables": {"v_x": ["sample"]}, "variable_attrs": {"v_x": {"component": {"field": "v"}}}})


def test_train_on_a_field_name_and_predict_in_the_users_layout(compose_cfg, tmp_path):
    path = _darcy_like(tmp_path / "user.nc")
    cfg = compose_cfg(
        "train",
        ["data=xarray", f"data.path={path}", "data.inputs=[a,v]", "data.targets=[v]", "data.sample_dim=n",
         "data.batch_size=8", "model.width=8", "model.modes=4", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false"],
    )
    train(cfg)
    assert list(cfg.data.inputs) == ["a", "v_x", "v_y"] and cfg.model.in_channels == 3 and cfg.model.out_channels == 2
    surrogate = Surrogate.load(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt")
    assert surrogate.targets == ["v_x", "v_y"]
    assert surrogate.schema.variables["v_y"].component == Component("v", "y", "component")
    user = xr.open_dataset(path, engine="h5netcdf").load().isel(n=slice(0, 3))
    out = surrogate.predict(user)
    assert list(out.data_vars) == ["v"] and out["v"].dims == ("n", "x", "y", "component")
    assert out["component"].values.tolist() == ["x", "y"] and out["v"].shape == (3, S, S, 2)
    np.testing.assert_array_equal(out["x"].values, user["x"].values)
    stacked = np.stack([user["a"].values, user["v"].values[..., 0], user["v"].values[..., 1]], axis=1)
    expected = surrogate.predict(stacked)  # (3, 2, S, S): the channels v_x, v_y
    np.testing.assert_array_equal(out["v"].values, np.moveaxis(expected, 1, -1))
    one = surrogate.predict(user.isel(n=0))  # one sample, no sample dim
    assert one["v"].dims == ("x", "y", "component")
    _serve_the_users_fields(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt", user, out)


def _serve_the_users_fields(best: Path, user: xr.Dataset, expected: xr.Dataset) -> None:
    """A NetCDF body with the vector field as the user stores it is answered with the field, as ``Surrogate.predict`` does."""
    import io
    import shutil

    import httpx

    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.registry import Registry
    from tests.serve.conftest import LiveServer

    models = best.parent / "served"
    models.mkdir()
    shutil.copy(best, models / "user.ckpt")
    flipped = user[["a", "v"]].isel(component=[1, 0])  # the labels say which component is which, not the order
    with LiveServer(create_app(Registry.from_folder(models), ServeSettings())) as server:
        answer = httpx.post(f"{server.url}/v1/models/user/predict", content=bytes(flipped.to_netcdf(engine="h5netcdf")),
                            headers={"content-type": "application/x-netcdf"}, timeout=60)
        assert answer.status_code == 200, answer.text
        out = xr.open_dataset(io.BytesIO(answer.content), engine="h5netcdf").load()
        assert list(out.data_vars) == ["v"] and out["v"].dims == ("n", "x", "y", "component")
        assert out["component"].values.tolist() == ["x", "y"]
        np.testing.assert_array_equal(out["v"].values, expected["v"].values)
        wrong = user[["a", "v"]].assign_coords(component=["p", "q"])
        refused = httpx.post(f"{server.url}/v1/models/user/predict", content=bytes(wrong.to_netcdf(engine="h5netcdf")),
                             headers={"content-type": "application/x-netcdf"}, timeout=60)
        assert refused.status_code == 422 and "has no component 'x'" in refused.text
