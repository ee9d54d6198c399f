"""A model trained on time windows answers in the user's layout: ``u (sample, time, x)`` in, the next
``n_steps_output`` states out, vector fields whole (``Surrogate.predict`` with an ``xarray.Dataset``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate, __version__
from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.data.xarray_datamodule import XarrayDataModule
from surrogates.models.fno import FNO
from surrogates.models.normalized import NormalizedOperator
from surrogates.nn.normalization import Normalizer
from surrogates.schema import Component, DataSchema, SchemaError
from surrogates.serve.inputs import InputError

N_IN, N_OUT, X = 2, 2, 16
COMPONENTS = {"v_x": {"field": "v", "label": "x", "dim": "component"},
              "v_y": {"field": "v", "label": "y", "dim": "component"}}


def _windowed_checkpoint(path: Path, fields: list[str], components: dict | None) -> Path:
    """An untrained 1D FNO on windows of ``N_IN`` -> ``N_OUT`` states of ``fields`` (var-major channels, as
    ``FieldDataset`` orders them: ``v_x_t0, v_x_t1, v_y_t0, v_y_t1 -> v_x_t2, v_x_t3, v_y_t2, v_y_t3``)."""
    torch.manual_seed(0)
    inputs = [f"{name}_t{k}" for name in fields for k in range(N_IN)]
    targets = [f"{name}_t{N_IN + k}" for name in fields for k in range(N_OUT)]
    net = FNO(in_channels=len(inputs), out_channels=len(targets), dim=1, modes=4, width=8, n_layers=2)
    window = {"inputs": fields, "targets": fields, "n_steps_input": N_IN, "n_steps_output": N_OUT}
    if components:
        window["components"] = components
    metadata = CheckpointMetadata(
        kind="operator", model=ClassSpec.from_dict(net.init_config(), "model"), package_version=__version__,
        data_schema={"inputs": inputs, "targets": targets, "spatial_dims": ["x"], "spatial_shape": [X],
                     "variables": {name: ["sample", "x"] for name in inputs + targets}, "window": window},
    )
    c_in, c_out = len(inputs), len(targets)
    model = NormalizedOperator(net, Normalizer.from_stats([0.1] * c_in, [2.0] * c_in),
                               Normalizer.from_stats([0.0] * c_out, [1.5] * c_out))
    return write_checkpoint(path, metadata, model.state_dict())


def _trajectories(n: int = 3, times: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, times, X, 2)).astype(np.float32)  # (sample, time, x, component)


def test_a_vector_field_trajectory_in_gives_the_next_states_of_the_field_out(tmp_path):
    surrogate = Surrogate.load(_windowed_checkpoint(tmp_path / "w.ckpt", ["v_x", "v_y"], COMPONENTS))
    v = _trajectories()
    ds = xr.Dataset({"v": (("sample", "time", "x", "component"), v)},
                    coords={"time": [0.0, 0.1, 0.2, 0.3, 0.4], "component": ["x", "y"], "x": np.arange(X) / X})
    out = surrogate.predict(ds)
    assert list(out.data_vars) == ["v"] and out["v"].dims == ("sample", "time", "x", "component")
    assert out["v"].shape == (3, N_OUT, X, 2) and out["component"].values.tolist() == ["x", "y"]
    np.testing.assert_allclose(out["time"].values, [0.5, 0.6], rtol=0, atol=4 * np.finfo(float).eps)
    np.testing.assert_array_equal(out["x"].values, ds["x"].values)
    # the same numbers as the channels by hand: the last N_IN states of each component, var-major
    channels = np.stack([v[:, 3, :, 0], v[:, 4, :, 0], v[:, 3, :, 1], v[:, 4, :, 1]], axis=1)
    expected = surrogate.predict(channels)  # (3, 4, X): v_x_t2, v_x_t3, v_y_t2, v_y_t3
    np.testing.assert_array_equal(out["v"].values[..., 0], expected[:, 0:2])
    np.testing.assert_array_equal(out["v"].values[..., 1], expected[:, 2:4])
    # one trajectory without the sample dim; components in another order are matched by label
    one = surrogate.predict(ds.isel(sample=0).isel(component=[1, 0]))
    assert one["v"].dims == ("time", "x", "component")
    np.testing.assert_array_equal(one["v"].values, out["v"].values[0])


def test_a_scalar_field_window_and_the_errors_that_name_the_window(tmp_path):
    surrogate = Surrogate.load(_windowed_checkpoint(tmp_path / "u.ckpt", ["u"], None))
    u = _trajectories()[..., 0]
    out = surrogate.predict(xr.Dataset({"u": (("sample", "time", "x"), u)}))
    assert out["u"].dims == ("sample", "time", "x") and "time" not in out.coords  # no input times: none made up
    np.testing.assert_array_equal(out["u"].values, surrogate.predict(u[:, -N_IN:]))
    with pytest.raises(ValueError, match="windows of 2 states.*at least 2 times"):
        surrogate.predict(xr.Dataset({"u": (("sample", "time", "x"), u[:, :1])}))
    with pytest.raises(ValueError, match="windows of 2 states"):
        surrogate.predict(xr.Dataset({"u": (("sample", "x"), u[:, 0])}))
    with pytest.raises(InputError, match=r"the dataset lacks input variable\(s\) \['u'\]; it has \['w'\]"):
        surrogate.predict(xr.Dataset({"w": (("sample", "time", "x"), u)}))


def test_the_window_records_the_components_of_its_vector_fields(tmp_path):
    path = tmp_path / "user.nc"
    xr.Dataset({"v": (("n", "time", "x", "component"), _trajectories(n=10))},
               coords={"component": ["x", "y"]}).to_netcdf(path, engine="h5netcdf")
    dm = XarrayDataModule(["v"], ["v"], path=path, sample_dim="n", n_steps_input=N_IN, n_steps_output=N_OUT,
                          input_time=None, target_time=None)
    schema = dm.data_schema()
    assert schema.window["inputs"] == ["v_x", "v_y"] and schema.window["components"] == COMPONENTS
    assert schema.window_component("v_y") == Component("v", "y", "component") and schema.window_component("w") is None
    assert DataSchema.from_dict(schema.to_dict()) == schema
    raw = schema.to_dict()
    raw["window"]["components"] = {"v_x": {"field": "v"}}
    with pytest.raises(SchemaError, match="window.components.v_x must name a field, label and dim"):
        DataSchema.from_dict(raw)


def test_the_service_answers_a_windowed_model_in_the_stored_layout(tmp_path):
    """A NetCDF body with the trajectories as stored (``v (sample, time, x, component)``) is answered with the
    next states of the field, as ``Surrogate.predict`` answers; a body with the channels still works."""
    import io

    import httpx

    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.registry import Registry
    from tests.serve.conftest import LiveServer

    models = tmp_path / "models"
    models.mkdir()
    surrogate = Surrogate.load(_windowed_checkpoint(models / "w.ckpt", ["v_x", "v_y"], COMPONENTS))
    v = _trajectories()
    ds = xr.Dataset({"v": (("sample", "time", "x", "component"), v)},
                    coords={"time": [0.0, 0.1, 0.2, 0.3, 0.4], "component": ["x", "y"]})
    expected = surrogate.predict(ds)
    headers = {"content-type": "application/x-netcdf"}
    with LiveServer(create_app(Registry.from_folder(models), ServeSettings())) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/v1/models/w/predict", content=bytes(ds.to_netcdf(engine="h5netcdf")), headers=headers)
        assert response.status_code == 200, response.text
        answer = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()
        assert answer["v"].dims == ("sample", "time", "x", "component")
        assert answer["component"].values.tolist() == ["x", "y"]
        np.testing.assert_allclose(answer["time"].values, expected["time"].values, rtol=0, atol=0)
        np.testing.assert_array_equal(answer["v"].values, expected["v"].values)
        one = client.post("/v1/models/w/predict", content=bytes(ds.isel(sample=0).to_netcdf(engine="h5netcdf")), headers=headers)
        one_answer = xr.open_dataset(io.BytesIO(one.content), engine="h5netcdf").load()
        assert one_answer["v"].dims == ("time", "x", "component")
        np.testing.assert_array_equal(one_answer["v"].values, expected["v"].values[0])
        short = client.post("/v1/models/w/predict", content=bytes(ds.isel(time=[0]).to_netcdf(engine="h5netcdf")), headers=headers)
        assert short.status_code == 422 and short.json()["code"] == "too_few_times", short.text
        channels = xr.Dataset({f"v_{c}_t{k}": (("sample", "x"), v[:, 3 + k, :, i])
                               for i, c in enumerate("xy") for k in range(N_IN)})
        by_channel = client.post("/v1/models/w/predict", content=bytes(channels.to_netcdf(engine="h5netcdf")), headers=headers)
        assert by_channel.status_code == 200, by_channel.text
        plain = xr.open_dataset(io.BytesIO(by_channel.content), engine="h5netcdf").load()
        np.testing.assert_array_equal(plain["v_y_t3"].values, expected["v"].values[:, 1, :, 1])


def test_windowed_answers_keep_the_time_units_and_give_the_fields_units(tmp_path):
    """The windowed answer's time coordinate keeps the request's ``units`` (as the service does), and the vector
    field gets the units its trained components agree on."""
    path = _windowed_checkpoint(tmp_path / "w.ckpt", ["v_x", "v_y"], COMPONENTS)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    from surrogates.checkpoint import METADATA_KEY

    schema = checkpoint[METADATA_KEY]["data_schema"]
    schema["variable_attrs"] = {name: {"units": "m s-1", "long_name": name} for name in schema["variables"]}
    torch.save(checkpoint, path)
    ds = xr.Dataset({"v": (("sample", "time", "x", "component"), _trajectories())},
                    coords={"time": ("time", [0.0, 0.1, 0.2, 0.3, 0.4], {"units": "s"}), "component": ["x", "y"]})
    out = Surrogate.load(path).predict(ds)
    assert out["time"].attrs == {"units": "s"}
    assert out["v"].attrs == {"long_name": "predicted v", "units": "m s-1"}
