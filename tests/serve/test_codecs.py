"""JSON arrays large enough to be converted one sample at a time give the same float32 bits and the same refusals."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.serve.codecs import ITEMWISE_VALUES, json_array
from surrogates.serve.errors import ServiceError


def _whole(value) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(value).astype(np.float32)


def test_a_large_array_converted_by_items_equals_the_whole_conversion_bit_for_bit():
    rng = np.random.default_rng(0)
    samples = ITEMWISE_VALUES // (16 * 16) + 1
    floats = rng.standard_normal((samples, 16, 16)).tolist()
    floats[1][2][3] = 3.5e38  # beyond float32: inf in both
    ints = rng.integers(-(2**62), 2**62, (samples, 16, 16)).tolist()  # int64 -> float64 -> float32, as whole
    mixed = [floats[k] if k % 2 else ints[k] for k in range(samples)]
    for value in (floats, ints, mixed):
        got, expected = json_array("a", value), _whole(value)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_a_large_ragged_or_non_numeric_array_is_still_refused():
    samples = ITEMWISE_VALUES // (16 * 16) + 1
    ragged = [[[1.0] * 16] * 16 for _ in range(samples)]
    ragged[-1] = [[1.0] * 15] * 16
    booleans = [[[True] * 16] * 16 for _ in range(samples)]
    for value in (ragged, booleans):
        with pytest.raises(ServiceError) as refused:
            json_array("a", value)
        assert refused.value.status == 422 and refused.value.code == "invalid_array"


def test_a_netcdf_body_lists_its_names_once_and_describes_only_the_variables_read(monkeypatch):
    """The service asks a body's variable names, then reads it: the names are listed once, only the input is
    described (the other variable costs nothing), and the arrays are the same as from raw bytes."""
    import xarray as xr

    from surrogates.serve import codecs
    from surrogates.serve.codecs import netcdf_body

    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    body = bytes(xr.Dataset({"a": (("sample", "x", "y"), a), "other": (("sample",), [1.0, 2.0])}).to_netcdf(engine="h5netcdf"))
    opened, described = [], []
    real_open, real_describe = netcdf_body._hdf5_header, netcdf_body._Hdf5Header._describe
    monkeypatch.setattr(netcdf_body, "_hdf5_header", lambda *args: opened.append(1) or real_open(*args))
    monkeypatch.setattr(netcdf_body._Hdf5Header, "_describe", lambda self, name: described.append(name) or real_describe(self, name))
    netcdf = codecs.NetcdfBody(body)
    assert netcdf.variable_names() == {"a", "other"} and netcdf.variable_names() == {"a", "other"}
    assert len(opened) == 1 and described == []
    arrays, _, engine, sample_dim, *_ = codecs.read_netcdf(netcdf, {"a": ("x", "y")}, max_elements=100)
    assert len(opened) == 2 and described == ["a"] and engine == "h5netcdf" and sample_dim == "sample"
    np.testing.assert_array_equal(arrays["a"], a)
    again, *_ = codecs.read_netcdf(body, {"a": ("x", "y")}, max_elements=100)
    np.testing.assert_array_equal(again["a"], a)
    with pytest.raises(ServiceError) as refused:
        codecs.NetcdfBody(body[:200]).variable_names()
    assert refused.value.status == 400 and refused.value.code == "malformed_netcdf"
