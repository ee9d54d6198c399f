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
