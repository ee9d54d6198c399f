"""Service limits that hold for every body and request: NetCDF bodies are sized from their header before
any data is read, answers are bounded before a model runs, and no answer shows server paths.

The models here are stand-ins (numpy runners) so that the file runs in seconds without training.
"""

from __future__ import annotations

import io
import os
import threading
import time
import zlib
from collections.abc import Iterator

import h5py
import httpx
import numpy as np
import pytest
import xarray as xr

from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.registry import ModelEntry, Registry, ResolutionRule, Variable

from .conftest import LiveServer, save_constructed_checkpoint

NETCDF = {"content-type": "application/x-netcdf"}
MAX_ELEMENTS = 1 << 16


def _identity(x: np.ndarray):
    return {"u": x[:, 0].copy()}, {}


def _entries() -> list[ModelEntry]:
    field = dict(spatial_dims=["x", "y"], batchable=True, runner=_identity)
    return [
        ModelEntry(name="op", kind="surrogate", source="op.ckpt", inputs=[Variable("a", ("x", "y"))],
                   outputs=[Variable("u", ("x", "y"))], **field),
        ModelEntry(name="heat", kind="surrogate", source="heat.ckpt", inputs=[Variable("u", ("x", "y"))],
                   outputs=[Variable("u", ("x", "y"))], **field),
        ModelEntry(  # parameters in, a field on the model's own 64x64 grid out (like a reduced-basis model)
            name="params", kind="reduced_basis", source="params.rb.h5", inputs=[Variable("mu", ())],
            outputs=[Variable("u", ("x", "y"))], spatial_dims=["x", "y"], batchable=True,
            resolution=ResolutionRule(policy="none", trained=(64, 64)),
            runner=lambda x: ({"u": np.zeros((len(x), 64, 64), np.float32)}, {}),
        ),
    ]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("limits_models")
    (root / "runs" / "a").mkdir(parents=True)
    (root / "runs" / "a" / "corrupt.ckpt").write_bytes(b"\x00" * 100)
    torch.save({"state_dict": {}}, root / "runs" / "foreign.ckpt")
    from surrogates.models.fno import FNO

    net = FNO(in_channels=1, out_channels=1, dim=2, modes=2, width=4, projection_channels=4)
    save_constructed_checkpoint(root / "runs" / "fno" / "best.ckpt", net, ["a"], ["u"], [8, 8])
    (root / "runs" / "fno" / "metrics.json").write_text('{"metrics": {"test/rel_l2": 0.5}}')
    return root


@pytest.fixture(scope="module")
def server(models_root) -> Iterator[LiveServer]:
    registry = Registry.from_folder(models_root)
    for entry in _entries():
        registry.add(entry)
    settings = ServeSettings(max_elements=MAX_ELEMENTS, max_output_elements=1 << 16, max_steps=100, max_body_bytes=16 << 20)
    with LiveServer(create_app(registry, settings)) as live:
        yield live


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


# -- NetCDF bodies --------------------------------------------------------------------------------------
def _bomb(name: str = "a", n: int = 20000, chunk: int = 2000, valid_a: bool = False, dims=("x", "y")) -> bytes:
    """A NetCDF-4 body of about 3 MB holding ``name``, an ``n x n`` float64 variable of gzip-compressed zeros
    (3.2 GB once decoded for the default n), chunk by chunk; with ``valid_a`` also a small input ``a``."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for dim in dims:
            f.create_dataset(dim, shape=(n,), dtype="f4")  # a dimension without data
            f[dim].make_scale(dim)
        big = f.create_dataset(name, shape=(n, n), dtype="f8", chunks=(chunk, chunk), compression="gzip")
        big.dims[0].attach_scale(f[dims[0]])
        big.dims[1].attach_scale(f[dims[1]])
        raw = zlib.compress(np.zeros((chunk, chunk)).tobytes(), 9)
        for i in range(0, n, chunk):
            for j in range(0, n, chunk):
                big.id.write_direct_chunk((i, j), raw)
        if valid_a:
            for dim in ("x", "y"):
                f.create_dataset(dim, data=np.arange(8, dtype="f4"))
                f[dim].make_scale(dim)
            a = f.create_dataset("a", data=np.ones((8, 8), np.float32))
            a.dims[0].attach_scale(f["x"])
            a.dims[1].attach_scale(f["y"])
    return buf.getvalue()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _post_measuring_rss(client: httpx.Client, path: str, body: bytes) -> tuple[httpx.Response, float, int]:
    """The response, its time, and the peak growth of this process's resident memory (the server runs in
    this process) while it was computed, sampled every millisecond."""
    peak, baseline, done = [0], _rss(), threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss() - baseline)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        response = client.post(path, content=body, headers=NETCDF)
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    return response, elapsed, peak[0]


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")
def test_a_compressed_bomb_is_refused_from_its_header(client):
    body = _bomb()
    assert len(body) < 4 << 20  # small on the wire, 3.2 GB of float64 once decoded
    client.post("/v1/models/op/predict", content=bytes(xr.Dataset({"a": (("x", "y"), np.ones((4, 4), np.float32))}).to_netcdf(engine="h5netcdf")), headers=NETCDF)  # imports warm
    response, elapsed, grown = _post_measuring_rss(client, "/v1/models/op/predict", body)
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_many_values" and "max_elements" in response.json()["detail"]
    assert "(20000, 20000)" in response.json()["detail"]
    assert elapsed < 5 and grown < 48 << 20, (elapsed, grown)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")
def test_a_bomb_in_a_variable_the_model_does_not_take_is_never_read(client):
    response, elapsed, grown = _post_measuring_rss(client, "/v1/models/op/predict", _bomb("junk", valid_a=True, dims=("i", "j")))
    assert response.status_code == 200, response.text
    out = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()
    assert out["u"].dims == ("x", "y") and np.array_equal(out["u"].values, np.ones((8, 8), np.float32))
    assert elapsed < 5 and grown < 48 << 20, (elapsed, grown)
    response = client.post("/v1/models/op/predict", content=_bomb("junk", dims=("i", "j")), headers=NETCDF)
    assert response.status_code == 422 and response.json()["code"] == "missing_input"
    assert "'junk'" in response.json()["detail"]  # named, not read


def test_chunks_larger_than_the_variable_count_in_the_decoded_bytes(client):
    buf = io.BytesIO()  # 64 values, but one 64 MiB chunk to decompress to read them
    with h5py.File(buf, "w") as f:
        for dim, size in (("x", 8), ("y", 8)):
            f.create_dataset(dim, data=np.arange(size, dtype="f4"))
            f[dim].make_scale(dim)
        a = f.create_dataset("a", shape=(8, 8), maxshape=(None, None), chunks=(2048, 4096), dtype="f8", compression="gzip")
        a.id.write_direct_chunk((0, 0), zlib.compress(bytes(2048 * 4096 * 8), 9))
        a.dims[0].attach_scale(f["x"])
        a.dims[1].attach_scale(f["y"])
    response = client.post("/v1/models/op/predict", content=buf.getvalue(), headers=NETCDF)
    assert response.status_code == 413, response.text
    assert "max_decoded_bytes" in response.json()["detail"] and str(8 * MAX_ELEMENTS) in response.json()["detail"]


@pytest.mark.parametrize(
    "variables, code, words",
    [
        ({"a": (("x", "y"), np.array([["a", "b"], ["c", "d"]]))}, "invalid_array", ["'a'", "expected numbers"]),
        ({"a": (("sample", "x", "y", "z"), np.ones((1, 2, 2, 2), np.float32))}, "wrong_dims", ["'a'", "('sample', 'x', 'y')"]),
        ({"a": (("sample", "x", "y"), np.ones((20, 64, 64), np.float32))}, "too_many_values", [str(20 * 64 * 64), "max_elements"]),
    ],
)
def test_needed_variables_are_checked_before_their_data_is_read(client, variables, code, words):
    body = bytes(xr.Dataset(variables).to_netcdf(engine="h5netcdf"))
    response = client.post("/v1/models/op/predict", content=body, headers=NETCDF)
    assert response.json()["code"] == code, response.text
    assert all(w in response.json()["detail"] for w in words), response.json()["detail"]
    classic = bytes(xr.Dataset(variables).to_netcdf(engine="scipy")) if code != "invalid_array" else None
    if classic is not None:  # NetCDF-3 bodies go through the same checks
        assert client.post("/v1/models/op/predict", content=classic, headers=NETCDF).json()["code"] == code


@pytest.mark.parametrize("variable", ["a", "x"])
def test_data_stored_outside_the_body_is_never_read(client, tmp_path, variable):
    secret = tmp_path / "server-file.bin"  # stands for any file on the server
    secret.write_bytes(np.arange(16, dtype="f4").tobytes())
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for dim in ("x", "y"):
            external = [(str(secret), 0, h5py.h5f.UNLIMITED)] if dim == variable else None
            f.create_dataset(dim, shape=(4,), dtype="f4", external=external)
            f[dim].make_scale(dim)
        external = [(str(secret), 0, h5py.h5f.UNLIMITED)] if variable == "a" else None
        a = f.create_dataset("a", shape=(4, 4), dtype="f4", external=external)
        if variable != "a":
            a[...] = 1.0
        a.dims[0].attach_scale(f["x"])
        a.dims[1].attach_scale(f["y"])
    response = client.post("/v1/models/op/predict", content=buf.getvalue(), headers=NETCDF)
    assert response.status_code == 422, response.text
    assert "outside the body" in response.json()["detail"] and f"{variable!r}" in response.json()["detail"]


@pytest.mark.parametrize("needed", [True, False])
def test_external_links_in_a_body_are_refused_before_they_are_followed(client, tmp_path, needed):
    server_file = tmp_path / "server-data.h5"  # stands for any HDF5 file on the server
    with h5py.File(server_file, "w") as f:
        f.create_dataset("secret", data=np.full((4, 4), 4242.0, np.float32))
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for dim in ("x", "y"):
            f.create_dataset(dim, data=np.arange(4, dtype="f4"))
            f[dim].make_scale(dim)
        name = "a" if needed else "unused"  # h5netcdf would open the target even to list an unneeded variable
        f[name] = h5py.ExternalLink(str(server_file), "/secret")
        if not needed:
            a = f.create_dataset("a", data=np.ones((4, 4), np.float32))
            a.dims[0].attach_scale(f["x"])
            a.dims[1].attach_scale(f["y"])
    response = client.post("/v1/models/op/predict", content=buf.getvalue(), headers=NETCDF)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "outside the body" in detail and f"{name!r}" in detail and str(tmp_path) not in detail, detail


# -- answers --------------------------------------------------------------------------------------------
def test_rollouts_are_bounded_before_they_run(client, server):
    batcher = server.server.config.app.state.batchers["heat"]
    calls = batcher.stats.calls
    u = np.zeros((4, 32, 32), np.float32).tolist()  # 4 x 32 x 32 x 16 steps = 2**16: the limit, accepted
    assert client.post("/v1/models/heat/predict", json={"inputs": {"u": u}, "steps": 16}).status_code == 200
    response = client.post("/v1/models/heat/predict", json={"inputs": {"u": u}, "steps": 17})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_many_output_values"
    assert str(4 * 32 * 32 * 17) in response.json()["detail"] and "max_output_elements" in response.json()["detail"]
    assert batcher.stats.calls == calls + 16  # the refused rollout ran no step


def test_answers_larger_than_their_inputs_are_bounded(client):
    ok = client.post("/v1/models/params/predict", json={"inputs": {"mu": [1.0] * 16}})  # 16 x 64 x 64 = 2**16
    assert ok.status_code == 200 and np.asarray(ok.json()["outputs"]["u"]).shape == (16, 64, 64)
    response = client.post("/v1/models/params/predict", json={"inputs": {"mu": [1.0] * 17}})
    assert response.status_code == 413 and "max_output_elements" in response.json()["detail"]


# -- what answers show ----------------------------------------------------------------------------------
def test_answers_show_no_server_paths_or_exception_text(client, models_root):
    root = str(models_root)
    health = client.get("/health")
    assert health.json()["unavailable"] == {
        "runs/a/corrupt": "cannot read checkpoint", "runs/foreign": "not a surrogates checkpoint",
    }
    models = client.get("/v1/models")
    records = {m["name"]: m for m in models.json()["models"]}
    assert records["runs/a/corrupt"]["source"] == "runs/a/corrupt.ckpt"
    assert records["runs/a/corrupt"]["error"] == "cannot read checkpoint"
    fno = records["runs/fno/best"]  # a ready model: its file and its run's metrics.json relative to models_dir
    assert fno["status"] == "ready" and fno["error"] is None and fno["source"] == "runs/fno/best.ckpt"
    assert fno["metrics"]["run_file"] == "runs/fno/metrics.json" and fno["metrics"]["run"] == {"test/rel_l2": 0.5}
    unavailable = client.post("/v1/models/runs/a/corrupt/predict", json={"inputs": {"a": [[1.0]]}})
    assert unavailable.status_code == 503 and unavailable.json()["detail"].endswith("unavailable: cannot read checkpoint")
    unknown = client.get("/v1/models/nope")
    broken = client.post("/v1/models/op/predict", content=b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, headers=NETCDF)
    assert broken.status_code == 400 and broken.json()["detail"] == "cannot read the NetCDF body (truncated or corrupt?)"
    for response in (health, models, unavailable, unknown, broken, client.get("/v1/models/runs/foreign")):
        assert root not in response.text and "/tmp" not in response.text and "Error:" not in response.text, response.text


def test_load_failures_are_logged_with_their_path(models_root, caplog):
    with caplog.at_level("ERROR", logger="surrogates.serve"):
        registry = Registry.from_folder(models_root)
    assert str(models_root / "runs" / "a" / "corrupt.ckpt") in caplog.text and "CheckpointError" in caplog.text
    corrupt = registry.get("runs/a/corrupt")  # the entry keeps the whole error for the log and the console
    assert corrupt.error.startswith("CheckpointError: ") and corrupt.reason == "cannot read checkpoint"


def test_405_and_options_agree_on_the_allowed_methods(client):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = client.request(method, "/v1/models/op/predict")
        assert response.status_code == 405 and response.headers["allow"] == "OPTIONS, POST", (method, response.headers)
        assert "POST" in response.json()["detail"]
    options = client.options("/v1/models/op/predict")
    assert options.status_code == 204 and options.headers["allow"] == "OPTIONS, POST"
    assert client.options("/v1/models/nope/predict").status_code == 404
    for path in ("/health", "/v1/models", "/v1/models/op", "/openapi.json"):
        refused = client.post(path, json={})
        assert refused.status_code == 405, path
        assert client.options(path).status_code == 204
        assert client.options(path).headers["allow"] == refused.headers["allow"] and "GET" in refused.headers["allow"]
    assert client.options("/no/such/path").status_code == 404
    assert client.post("/no/such/path").status_code == 404


def test_openapi_puts_steps_only_in_the_request_form_of_the_models_that_roll_out(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert set(components["PredictRequest"]["properties"]) == {"inputs"}  # fits every model
    rollout = components["PredictRequest_steps"]
    assert set(rollout["properties"]) == {"inputs", "steps"} and "['heat']" in rollout["description"]
    assert not any(key.startswith("PredictRequest_") and "seed" in key for key in components)  # no model takes a seed
    body = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"anyOf": [{"$ref": "#/components/schemas/PredictRequest"}, {"$ref": "#/components/schemas/PredictRequest_steps"}]}
    query = {p["name"]: p for p in schema["paths"]["/v1/models/{name}/predict"]["post"]["parameters"]}
    assert "['heat']" in query["steps"]["description"]
    refused = client.post("/v1/models/op/predict", json={"inputs": {"a": [[1.0]]}, "steps": 2})
    assert refused.status_code == 422 and refused.json()["code"] == "steps_not_supported"
