"""Hypothesis-generated NetCDF and JSON bodies against a live server: no body may get a 5xx.

tests/serve/test_fuzz.py fuzzes the *values* of well-formed JSON requests; here the bodies themselves
vary: NetCDF-4 and NetCDF-3 files with random dims, dtypes, attributes, chunking, compression and
checksums (through xarray, and raw h5py files with groups, scalars, compound, string and boolean
data), and JSON documents with deep nesting, huge numbers, wrong types and stray fields. Examples
are derandomized and modest in number so that the file runs in well under a minute.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.registry import Registry
from tests.serve.conftest import LiveServer, save_constructed_checkpoint

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
NETCDF = {"content-type": "application/x-netcdf"}
JSON = {"content-type": "application/json"}
MODELS = ["fno", "rollout/heat"]
STATUSES: dict[str, Counter] = {}  # per generator, printed for docs/reliability.md
CODES: dict[str, Counter] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    from surrogates.models.fno import FNO

    root = tmp_path_factory.mktemp("fuzz_models")
    torch.manual_seed(0)
    save_constructed_checkpoint(root / "fno.ckpt", FNO(in_channels=1, out_channels=1, dim=2, modes=2, width=4,
                                projection_channels=4), ["a"], ["u"], [8, 8], pde="darcy")
    save_constructed_checkpoint(root / "rollout" / "heat.ckpt", FNO(in_channels=1, out_channels=1, dim=2, modes=2,
                                width=4, projection_channels=4), ["u"], ["u"], [8, 8], pde="heat")
    settings_ = ServeSettings(max_body_bytes=1 << 20, max_elements=1 << 14, max_output_elements=1 << 14, max_steps=20,
                              max_batch_size=8, max_wait_ms=2.0)
    with LiveServer(create_app(Registry.from_folder(root), settings_)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
    with httpx.Client(base_url=server.url, timeout=60) as c:  # still serving after every body
        assert c.get("/health").json()["status"] == "ok"
        ok = c.post("/v1/models/fno/predict", json={"inputs": {"a": np.ones((8, 8)).tolist()}})
        assert ok.status_code == 200, ok.text


def _post(client: httpx.Client, generator: str, model: str, content: bytes, headers: dict, query: str = "") -> httpx.Response:
    response = client.post(f"/v1/models/{model}/predict{query}", content=content, headers=headers)
    STATUSES.setdefault(generator, Counter())[response.status_code] += 1
    assert response.status_code < 500, (generator, model, response.text[:500])
    if response.status_code >= 400:
        payload = response.json()
        assert payload["code"] and payload["detail"], payload
        CODES.setdefault(generator, Counter())[payload["code"]] += 1
    return response


# -- NetCDF ---------------------------------------------------------------------------------------------
NAMES = st.sampled_from(["a", "u", "a", "u", "x", "y", "sample", "time", "z"]) | st.text(
    alphabet=st.characters(min_codepoint=48, max_codepoint=122, categories=["L", "N"]), min_size=1, max_size=5
)
DIMS = st.sampled_from(["sample", "x", "y", "time", "z", "i"])
NUMERIC = st.sampled_from(["f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2"])
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 3.0, 12.0, 1e30, -1e38, 65504.0])
)
ATTRS = st.dictionaries(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=6).filter(lambda k: not k.startswith("_")),
    st.one_of(st.text(max_size=20).filter(lambda t: "\x00" not in t), st.integers(-(2**31), 2**31 - 1), st.floats(allow_nan=False, width=32),
              st.lists(st.integers(-100, 100), min_size=1, max_size=4)),
    max_size=4,
)


@st.composite
def xarray_bodies(draw, model_input: str) -> bytes:
    engine = draw(st.sampled_from(["h5netcdf", "scipy"]))
    sizes = {dim: draw(st.integers(0 if dim == "sample" else 1, 10)) for dim in ("sample", "x", "y", "time", "z", "i")}
    variables, encoding = {}, {}
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    # half the bodies hold the model's input with dims it takes (and more variables), so that many reach the model
    fitting = draw(st.booleans())
    if fitting and model_input not in names:
        names.insert(0, model_input)
    for name in names:
        if fitting and name == model_input:
            dims = draw(st.sampled_from([("sample", "x", "y"), ("x", "y"), ("y", "x"), ("sample", "y", "x")]))
        else:
            dims = tuple(draw(st.lists(DIMS, max_size=4, unique=True)))
        dtype = np.dtype(draw(NUMERIC))
        shape = tuple(sizes[d] for d in dims)
        elements = st.floats(0, 20) | VALUES if fitting else VALUES  # mostly finite values for the inputs
        values = draw(hnp.arrays(np.float64, shape, elements=elements))
        with np.errstate(all="ignore"):
            data = values.astype(dtype) if dtype.kind == "f" else np.nan_to_num(values).clip(-100, 100).astype(dtype)
        variables[name] = xr.Variable(dims, data, attrs=draw(ATTRS))
        if engine == "h5netcdf" and dims and all(shape) and draw(st.booleans()):
            encoding[name] = {
                "zlib": True, "complevel": draw(st.integers(1, 9)), "shuffle": draw(st.booleans()),
                "fletcher32": draw(st.booleans()), "chunksizes": tuple(draw(st.integers(1, max(1, n))) for n in shape),
            }
    coords = {}
    if draw(st.booleans()):
        for dim in ("x", "y"):
            if dim not in variables and draw(st.booleans()):
                coords[dim] = np.linspace(0, 1, sizes[dim]).astype(draw(st.sampled_from(["f4", "f8", "i4"])))
    try:
        ds = xr.Dataset(variables, coords=coords, attrs=draw(ATTRS))
        return bytes(ds.to_netcdf(engine=engine, encoding=encoding))
    except Exception:  # a combination the writer cannot store (NetCDF-3 and 64-bit ints, a name clash, ...)
        reject()


@st.composite
def raw_hdf5_bodies(draw) -> bytes:
    """Files xarray would not write: groups, scalars, compound, strings, booleans, complex, no dimension scales."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for dim in draw(st.lists(st.sampled_from(["x", "y", "sample"]), max_size=3, unique=True)):
            f.create_dataset(dim, data=np.arange(draw(st.integers(1, 8)), dtype="f4"))
            f[dim].make_scale(dim)
        for name in draw(st.lists(st.sampled_from(["a", "u", "x_", "g/a"]), min_size=1, max_size=3, unique=True)):
            kind = draw(st.sampled_from(["float", "scalar", "compound", "string", "bool", "complex", "empty", "lzf"]))
            shape = tuple(draw(st.lists(st.integers(1, 8), max_size=3)))
            if kind == "scalar":
                ds = f.create_dataset(name, data=np.float32(draw(VALUES)))
            elif kind == "compound":
                ds = f.create_dataset(name, shape=shape, dtype=[("re", "f4"), ("im", "f4")])
            elif kind == "string":
                ds = f.create_dataset(name, data=np.array(["ab"] * int(np.prod(shape)), dtype=h5py.string_dtype()).reshape(shape))
            elif kind == "bool":
                ds = f.create_dataset(name, data=np.ones(shape, bool))
            elif kind == "complex":
                ds = f.create_dataset(name, data=np.ones(shape, np.complex64))
            elif kind == "empty":
                ds = f.create_dataset(name, shape=None, dtype="f4")
            else:
                data = draw(hnp.arrays(np.float32, shape, elements=VALUES))
                compression = "lzf" if kind == "lzf" and shape else None
                ds = f.create_dataset(name, data=data, compression=compression)
            if ds.shape and draw(st.booleans()):
                for axis, dim in enumerate(["x", "y", "sample"][: len(ds.shape)]):
                    if dim in f and f[dim].shape[0] == ds.shape[axis]:
                        ds.dims[axis].attach_scale(f[dim])
            for key, value in draw(ATTRS).items():
                ds.attrs[key] = value
    return buf.getvalue()


@FUZZ
@given(data=st.data(), model=st.sampled_from(MODELS), steps=st.sampled_from(["", "", "?steps=2", "?steps=x", "?seed=1"]))
def test_xarray_netcdf_bodies_never_get_a_5xx(client, data, model, steps):
    body = data.draw(xarray_bodies("a" if model == "fno" else "u"))
    response = _post(client, "netcdf (xarray)", model, body, NETCDF, steps if model.startswith("rollout") else "")
    if response.status_code == 200:
        assert np.isfinite(xr.open_dataset(io.BytesIO(response.content))["u"].values).all()


@FUZZ
@given(body=raw_hdf5_bodies(), model=st.sampled_from(MODELS))
def test_raw_hdf5_bodies_never_get_a_5xx(client, body, model):
    _post(client, "netcdf (raw hdf5)", model, body, NETCDF)


# -- JSON -----------------------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from([1e308, -1e308, 5e-324, 2**63, -(2**63) - 1, 2**64]),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                           max_leaves=30)


@st.composite
def json_bodies(draw) -> bytes:
    shape = draw(st.sampled_from(["inputs-field", "inputs-any", "top-any", "extra"]))
    if shape == "inputs-field":
        side = draw(st.integers(1, 9))
        field = draw(st.one_of(
            hnp.arrays(np.float64, (side, side), elements=VALUES).map(lambda a: a.tolist()),
            st.lists(st.lists(SCALARS, max_size=9), max_size=9),
        ))
        doc = {"inputs": {draw(st.sampled_from(["a", "u", "b"])): field}}
        if draw(st.booleans()):
            doc[draw(st.sampled_from(["steps", "seed"]))] = draw(SCALARS)
    elif shape == "inputs-any":
        doc = {"inputs": draw(JSON_VALUES)}
    elif shape == "top-any":
        doc = draw(JSON_VALUES)
    else:
        doc = {"inputs": {"a": [[1.0] * 8] * 8}, draw(st.text(max_size=5)): draw(JSON_VALUES)}
    text = json.dumps(doc)  # Python writes NaN, Infinity and integers of any size
    if draw(st.integers(0, 9)) == 0:  # sometimes cut it
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


@FUZZ
@given(body=json_bodies(), model=st.sampled_from(MODELS))
def test_json_bodies_never_get_a_5xx(client, body, model):
    response = _post(client, "json", model, body, JSON)
    if response.status_code == 200:
        assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in response.json()["outputs"].values())


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,                              # nesting beyond any parser's recursion limit
    b'{"inputs": {"a": ' + b"[" * 5_000 + b"1" + b"]" * 5_000 + b"}}",
    b'{"inputs": {"a": [[' + b"9" * 5_000 + b"]]}}",                # an integer of 5000 digits
    b'{"inputs": {"a": [[1e999999, -1e999999]]}}',                 # overflows to infinity
    b'{"inputs": {"a": [[1.0]]}, "steps": ' + b"9" * 400 + b"}",  # a huge steps
    b'{"inputs": {"a": [[1.0]]}, "seed": -' + b"9" * 400 + b"}",
    b'{"inputs": {"a": [[1.0]]}, "inputs": {"a": [[2.0]]}}',       # a repeated key
    '{"inputs": {"\u00e4": [[1.0]]}}'.encode("utf-16"),            # not UTF-8
    b'{"inputs": {"a": [[1.0]]}}\x00garbage',
    b"\xef\xbb\xbf" + b'{"inputs": {"a": [[1.0]]}}',               # a byte order mark
])
def test_pathological_json_bodies_never_get_a_5xx(client, body):
    for model in MODELS:
        _post(client, "json (pathological)", model, body, JSON)


def test_zz_report_statuses():
    """Prints the statuses every generator got (run last in this file)."""
    print("\n" + "\n".join(f"{name}: {sum(c.values())} bodies, statuses {dict(sorted(c.items()))}, codes {dict(CODES.get(name, {}))}"
                           for name, c in STATUSES.items()))
    assert all(status < 500 for counter in STATUSES.values() for status in counter)
