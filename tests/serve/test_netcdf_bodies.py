"""NetCDF bodies built to cost the service more than their size, or to break its answer: every variable it reads
(component labels included) is sized and checked from the header first, a body's variables, attributes and
chunks are counted before anything walks them, NetCDF-3 data may not alias, and coordinates are echoed as sent.

The models are stand-ins (numpy runners) and the limits are low, so that each refusal is provoked with a tiny body.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator

import h5py
import httpx
import numpy as np
import pytest
import xarray as xr

from surrogates.schema import Component, DataSchema
from surrogates.serve import codecs
from surrogates.serve.codecs import netcdf_reading
from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.errors import ServiceError
from surrogates.serve.registry import ModelEntry, Registry, Variable

from .conftest import LiveServer

NETCDF = {"content-type": "application/x-netcdf"}
LIMITS = dict(max_elements=1 << 16, max_chunks=4096, max_variables=30, max_attributes=30)


def _entries() -> list[ModelEntry]:
    schema = DataSchema(
        inputs=("v_x", "v_y"), targets=("w",), spatial_dims=("x", "y"),
        variables={"v_x": Variable("v_x", ("x", "y"), component=Component("v", "x", "component")),
                   "v_y": Variable("v_y", ("x", "y"), component=Component("v", "y", "component"))},
    )
    field = dict(spatial_dims=["x", "y"], batchable=True)
    return [
        ModelEntry(name="op", kind="surrogate", source="op.ckpt", inputs=[Variable("a", ("x", "y"))],
                   outputs=[Variable("u", ("x", "y"))], runner=lambda x: ({"u": x[:, 0].copy()}, {}), **field),
        ModelEntry(  # a vector field v (..., component) in, as a model trained on the user's file takes it
            name="vec", kind="surrogate", source="vec.ckpt", inputs=[Variable("v_x", ("x", "y")), Variable("v_y", ("x", "y"))],
            outputs=[Variable("w", ("x", "y"))], data_schema=schema, runner=lambda x: ({"w": x[:, 0].copy()}, {}), **field,
        ),
    ]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    registry = Registry()
    for entry in _entries():
        registry.add(entry)
    with LiveServer(create_app(registry, ServeSettings(**LIMITS))) as live:
        yield live


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _post(client: httpx.Client, model: str, body: bytes) -> httpx.Response:
    return client.post(f"/v1/models/{model}/predict", content=body, headers=NETCDF)


def _refused(response: httpx.Response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert response.json()["code"] == code and all(w in detail for w in words), detail
    return detail


def _hdf5(build) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        build(f)
    return buf.getvalue()


def _scales(f: h5py.File, sizes: dict[str, int]) -> None:
    for dim, size in sizes.items():
        f.create_dataset(dim, data=np.arange(size, dtype="f4"))
        f[dim].make_scale(dim)


def _attach(dataset: h5py.Dataset, f: h5py.File, dims: tuple[str, ...]) -> None:
    for axis, dim in enumerate(dims):
        dataset.dims[axis].attach_scale(f[dim])


def _field(labels) -> bytes:
    """``v (x, y, component)``, component ``k`` holding ``k + 1``, whose component labels ``labels(f)`` creates
    (a dimension scale ``component``)."""
    def build(f):
        _scales(f, {"x": 2, "y": 2})
        labels(f)
        f["component"].make_scale("component")
        count = f["component"].shape[0]
        v = f.create_dataset("v", data=np.broadcast_to(np.arange(1, count + 1, dtype=np.float32), (2, 2, count)))
        _attach(v, f, ("x", "y", "component"))
    return _hdf5(build)


# -- component labels: read only after the checks inputs and coordinates get -----------------------------
def test_component_labels_stored_outside_the_body_are_never_read(client, tmp_path):
    secret = tmp_path / "server-file.bin"  # stands for any file on the server
    secret.write_bytes(b"secret:x:0:0:" * 8)
    external = [(str(secret), 0, h5py.h5f.UNLIMITED)]
    strings = _field(lambda f: f.create_dataset("component", shape=(2,), dtype=h5py.string_dtype(), external=external))
    detail = _refused(_post(client, "vec", strings), 422, "invalid_array", "'component'", "outside the body")
    complex_labels = _field(lambda f: f.create_dataset("component", shape=(2,), dtype="c16", external=external))
    # refused by the walk of the body's links before the labels' dtype is looked at (complex labels are refused
    # as such too: test_component_labels_count_in_the_decoded_bytes)
    detail += _refused(_post(client, "vec", complex_labels), 422, "invalid_array", "'component'", "outside the body")
    assert "secret" not in detail and "j)" not in detail  # no byte of the file, as text or as complex numbers


def test_component_labels_count_in_the_decoded_bytes(client):
    def bomb(f):  # 2 labels, one gzip chunk of 2**20 complex128 (16 MiB once decoded) in a few KiB
        labels = f.create_dataset("component", shape=(2,), maxshape=(None,), chunks=(1 << 20,), dtype="c16", compression="gzip")
        labels.id.write_direct_chunk((0,), zlib.compress(bytes(16 << 20), 9))
    response = _post(client, "vec", _field(bomb))
    _refused(response, 422, "invalid_array", "'component'", "complex128", "expected numbers or strings")
    honest = _field(lambda f: f.create_dataset("component", data=["y", "x"], dtype=h5py.string_dtype()))
    answer = _post(client, "vec", honest)  # labels as h5netcdf writes them: variable-length strings
    assert answer.status_code == 200, answer.text
    out = xr.open_dataset(io.BytesIO(answer.content), engine="h5netcdf")
    np.testing.assert_array_equal(out["w"].values, np.full((2, 2), 2.0))  # w = v_x, the second component


def test_variable_length_labels_count_as_they_are_read():
    """The header cannot tell the bytes of variable-length strings (heap objects, which many elements may share):
    they count against what max_decoded_bytes leaves, as they are read."""
    body = _field(lambda f: f.create_dataset("component", data=["x", "y", "z" * 4000], dtype=h5py.string_dtype()))
    with codecs.NetcdfBody(body).opened() as header:  # v, x, y and the labels' 8-byte references
        counted = sum(header[name].decoded_bytes for name in ("v", "x", "y", "component"))
    components = {"v_x": Component("v", "x", "component"), "v_y": Component("v", "y", "component")}
    specs = {"v_x": ("x", "y"), "v_y": ("x", "y")}
    with pytest.raises(ServiceError) as refused:
        codecs.read_netcdf(body, specs, 1 << 16, max_decoded_bytes=counted + 4000, components=components)
    assert refused.value.status == 413 and "'component'" in refused.value.message
    assert "max_decoded_bytes" in refused.value.message
    arrays, coords, *_ = codecs.read_netcdf(body, specs, 1 << 16, max_decoded_bytes=counted + 4002, components=components)
    assert set(arrays) == {"v_x", "v_y"} and coords["component"][0].tolist() == ["x", "y", "z" * 4000]


def test_a_dataset_larger_than_its_dims_is_refused_from_its_header(client):
    def larger(f):  # 'a' holds 1024 x 1024 values (16 x max_elements), its dims say 2 x 2: xarray would read it whole
        _scales(f, {"x": 2, "y": 2})
        a = f.create_dataset("a", shape=(1024, 1024), dtype="f4", chunks=(256, 256), compression="gzip")
        for i in range(0, 1024, 256):
            for j in range(0, 1024, 256):
                a.id.write_direct_chunk((i, j), zlib.compress(bytes(256 * 256 * 4), 9))
        _attach(a, f, ("x", "y"))
    _refused(_post(client, "op", _hdf5(larger)), 422, "wrong_dims", "'a'", "(1024, 1024)", "(2, 2)")


# -- chunks, variables, attributes: counted before they cost anything ---------------------------------------
def test_an_input_in_tiny_chunks_is_refused_from_its_header(client, monkeypatch):
    def tiny(f):  # 96 x 96 values in (1, 1) chunks, none written: a few KiB that would cost 9216 chunk reads
        _scales(f, {"x": 96, "y": 96})
        _attach(f.create_dataset("a", shape=(96, 96), dtype="f4", chunks=(1, 1), fillvalue=1.0), f, ("x", "y"))

    def no_reads(*args, **kwargs):  # the refusal must come from the header, before any value is read
        raise AssertionError("the body's values were read")

    monkeypatch.setattr(netcdf_reading, "_decode", no_reads)  # the server runs in this process
    response = _post(client, "op", _hdf5(tiny))
    _refused(response, 422, "too_many_chunks", "'a'", "(1, 1)", "9216", "max_chunks", str(LIMITS["max_chunks"]))
    assert ServeSettings().max_chunks == 1 << 16


def test_hdf5_bookkeeping_of_each_chunk_counts_in_the_decoded_bytes(client):
    def tiny(f):  # 64 x 64 values (16 KiB) in 4096 chunks: within max_chunks, but 16 MiB of HDF5 bookkeeping to read
        _scales(f, {"x": 64, "y": 64})
        _attach(f.create_dataset("a", shape=(64, 64), dtype="f4", chunks=(1, 1), fillvalue=1.0), f, ("x", "y"))
    detail = _refused(_post(client, "op", _hdf5(tiny)), 413, "too_many_values", "max_decoded_bytes", "4096 bytes per chunk")
    assert str(4096 * (4 + codecs.CHUNK_BOOKKEEPING) + 2 * 64 * 4) in detail  # the contiguous coordinates: no chunks


def test_chunks_of_every_variable_read_add_up(client):
    def coordinates_too(f):  # the input in 64 chunks, its coordinates in 2 x 2048: 4160 in all
        for dim in ("x", "y"):
            f.create_dataset(dim, data=np.arange(2048, dtype="f4"), chunks=(1,))
            f[dim].make_scale(dim)
        _attach(f.create_dataset("a", shape=(2048, 2048), dtype="f4", chunks=(256, 256)), f, ("x", "y"))
    body = _hdf5(coordinates_too)
    with pytest.raises(ServiceError) as refused:
        codecs.read_netcdf(body, {"a": ("x", "y")}, 1 << 22, max_chunks=4096)
    assert refused.value.code == "too_many_chunks" and "4160 with the other variables read" in refused.value.message


def test_bodies_of_many_variables_are_refused_before_they_are_walked(client):
    many = _hdf5(lambda f: [f.create_dataset(f"d{i}", shape=(), dtype="i1") for i in range(31)])
    _refused(_post(client, "op", many), 413, "too_many_variables", "31 objects", "max_variables")
    classic = bytes(xr.Dataset({f"v{i}": ((), float(i)) for i in range(31)}).to_netcdf(engine="scipy"))
    _refused(_post(client, "op", classic), 413, "too_many_variables", "31 variables", "max_variables")
    inputs = {f"k{i}": 0.0 for i in range(31)}
    response = client.post("/v1/models/op/predict", json={"inputs": inputs})
    _refused(response, 413, "too_many_variables", "31 inputs", "max_variables")


def test_name_lists_in_messages_are_short(client):
    unknown = {"a": [[1.0]], **{f"k{i:02d}": 0.0 for i in range(25)}}
    detail = _refused(client.post("/v1/models/op/predict", json={"inputs": unknown}), 422, "unknown_input", "and 5 more")
    assert "'k19'" in detail and "'k20'" not in detail
    others = bytes(xr.Dataset({f"v{i:02d}": ((), 0.0) for i in range(25)}).to_netcdf(engine="h5netcdf"))
    _refused(_post(client, "op", others), 422, "missing_input", "lacks input variable(s) ['a']", "and 5 more")


def test_attributes_of_the_variables_read_are_counted(client):
    def noted(f):  # the input with 31 attributes (xarray reads each, about 0.4 ms); other variables' do not count
        _scales(f, {"x": 2, "y": 2})
        a = f.create_dataset("a", data=np.ones((2, 2), np.float32))
        _attach(a, f, ("x", "y"))
        for i in range(31):
            a.attrs[f"note{i}"] = i
    _refused(_post(client, "op", _hdf5(noted)), 413, "too_many_attributes", "variable 'a'", "max_attributes")
    ds = xr.Dataset({"a": (("x", "y"), np.ones((2, 2), np.float32)), "b": ((), 0.0, {f"n{i}": i for i in range(31)})})
    _refused(_post(client, "op", bytes(ds.to_netcdf(engine="scipy"))), 413, "too_many_attributes", "max_attributes")
    assert _post(client, "op", bytes(ds.to_netcdf(engine="h5netcdf"))).status_code == 200  # 'b' is never read


def test_decoding_stops_at_the_deadline():
    body = bytes(xr.Dataset({"a": (("x", "y"), np.ones((2, 2), np.float32))}).to_netcdf(engine="h5netcdf"))
    with pytest.raises(ServiceError) as refused:
        codecs.read_netcdf(body, {"a": ("x", "y")}, 100, deadline=time.monotonic() - 1, timeout_s=30)
    assert refused.value.status == 504 and refused.value.code == "deadline_exceeded" and "30 s" in refused.value.message
    with pytest.raises(ServiceError, match="request_timeout_s"):
        codecs.decode_json_request(b'{"inputs": {"a": [[1.0]]}}', 10, deadline=time.monotonic() - 1, timeout_s=30)


# -- NetCDF-3: data ranges checked before scipy copies them ---------------------------------------------------
def _classic(begins: list[int], values: int = 8) -> bytes:
    """A CDF-1 file of float64 variables ``v0, v1, ...`` of ``values`` values each, starting at ``begins``
    (relative to the end of the header), followed by enough data for all of them."""
    def string(name: str) -> bytes:
        raw = name.encode()
        return struct.pack(">i", len(raw)) + raw + b"\0" * (-len(raw) % 4)

    def var(name: str, begin: int) -> bytes:
        return string(name) + struct.pack(">ii", 1, 0) + struct.pack(">ii", 0, 0) + struct.pack(">iii", 6, 8 * values, begin)

    dims = struct.pack(">ii", 0x0A, 1) + string("n") + struct.pack(">i", values)
    size = 8 + len(dims) + 8 + 8 + sum(len(var(f"v{k}", 0)) for k in range(len(begins)))
    variables = struct.pack(">ii", 0x0B, len(begins)) + b"".join(var(f"v{k}", size + b) for k, b in enumerate(begins))
    header = b"CDF\x01" + struct.pack(">i", 0) + dims + struct.pack(">ii", 0, 0) + variables
    assert len(header) == size
    return header + bytes(8 * values * len(set(begins)))


def test_netcdf3_variables_may_not_share_their_data(client):
    assert codecs.classic_header(_classic([0, 64, 128]))["v2"].shape == (8,)  # side by side: fine
    aliased = _classic([0, 0, 0])  # three variables, one data region: scipy would copy it three times
    _refused(_post(client, "op", aliased), 400, "malformed_netcdf", "'v0'", "'v1'", "the same bytes")
    overlapping = _classic([0, 32])
    _refused(_post(client, "op", overlapping), 400, "malformed_netcdf", "the same bytes")
    beyond = _classic([0, 64])[:-8]
    _refused(_post(client, "op", beyond), 400, "malformed_netcdf", "'v1'", "beyond the end of the body")


def test_the_classic_header_reads_as_scipy_reads_it():
    from scipy.io import netcdf_file

    ds = xr.Dataset(
        {"a": (("sample", "x", "y"), np.ones((3, 2, 5), np.float32), {"units": "m", "scale": [1, 2]}),
         "i": (("sample",), np.arange(3, dtype="i2")), "b": (("x",), np.array([1, 2], "i1"))},
        coords={"x": [0.5, 1.5]}, attrs={"title": "t"},
    )
    # (scipy writes a scalar variable after the first record, inside the record section: no scalar with records)
    for version, records, data in [("NETCDF3_CLASSIC", ["sample"], ds), ("NETCDF3_64BIT", [], ds.assign(s=7.0))]:
        body = bytes(data.to_netcdf(engine="scipy", format=version, unlimited_dims=records))
        header = codecs.classic_header(body)
        with netcdf_file(io.BytesIO(body), "r", mmap=False) as f:
            expected = {name: (tuple(v.dimensions), tuple(v.shape), np.dtype(v.data.dtype)) for name, v in f.variables.items()}
        assert {name: (v.dims, v.shape, v.dtype) for name, v in header.items()} == expected


# -- coordinates are echoed as sent ------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["scipy", "h5netcdf"])
def test_time_coordinates_are_echoed_as_their_numbers(client, engine):
    x = np.array([0.0, 1.0, 2.0, 3.000000001])  # as datetime64[ns] it could not be written back to NetCDF-3
    ds = xr.Dataset({"a": (("sample", "x", "y"), np.ones((2, 4, 4), np.float32))},
                    coords={"x": ("x", x, {"units": "seconds since 1970-01-01"}), "y": ("y", np.arange(4.0), {"units": "days"})})
    response = _post(client, "op", bytes(ds.to_netcdf(engine=engine)))
    assert response.status_code == 200, response.text
    out = xr.open_dataset(io.BytesIO(response.content), engine=engine, decode_times=False, decode_timedelta=False).load()
    np.testing.assert_array_equal(out["x"].values, x)
    assert out["x"].attrs["units"] == "seconds since 1970-01-01" and out["y"].attrs["units"] == "days"


def test_a_coordinate_the_answer_cannot_store_is_refused_before_the_model_runs(client, server):
    unsigned = xr.Dataset({"a": (("sample", "x", "y"), np.ones((2, 4, 4), np.float32))},
                          coords={"x": ("x", np.array([-56, -55, -54, -53], np.int8), {"_Unsigned": "true"})})
    calls = server.server.config.app.state.batchers["op"].stats.calls
    response = _post(client, "op", bytes(unsigned.to_netcdf(engine="scipy")))  # CF decodes it to uint8 200..203
    _refused(response, 422, "invalid_array", "coordinate 'x'", "uint8", "NetCDF-3")
    assert server.server.config.app.state.batchers["op"].stats.calls == calls


def test_coordinate_attributes_an_answer_cannot_store_are_left_out(client):
    def odd(f):
        _scales(f, {"x": 4, "y": 4})
        _attach(f.create_dataset("a", data=np.ones((4, 4), np.float32)), f, ("x", "y"))
        f["x"].attrs["ref"] = f["a"].ref
        f["x"].attrs["pair"] = np.array([(1, 2.0)], dtype=[("i", "i4"), ("f", "f8")])
        f["x"].attrs["flag"] = np.bool_(True)
        f["x"].attrs["units"] = "m"
        f["x"].attrs["bounds"] = np.array([0.0, 3.0])  # names a variable, for xarray's writer: text only
        f["x"].attrs["range"] = np.array([0.0, 3.0])
    response = _post(client, "op", _hdf5(odd))
    assert response.status_code == 200, response.text
    out = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf")
    assert out["x"].attrs["units"] == "m" and list(out["x"].attrs["range"]) == [0.0, 3.0]
    assert not {"ref", "pair", "flag", "bounds"} & set(out["x"].attrs)


def test_an_attribute_the_writer_refuses_costs_the_answer_its_coordinate_attributes_not_a_500():
    u = {"u": (["x"], np.ones(4, np.float32))}
    body = codecs.write_netcdf(u, {"x": (np.arange(4.0), {"units": "m", "_FillValue": "abc"})}, {"model": "op"}, "h5netcdf")
    out = xr.open_dataset(io.BytesIO(body), engine="h5netcdf")
    np.testing.assert_array_equal(out["x"].values, np.arange(4.0))
    assert out["x"].attrs == {} and out.attrs["model"] == "op"
