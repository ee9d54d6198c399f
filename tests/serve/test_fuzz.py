"""Fuzzing the predict endpoint against a running server: no input may cause a 5xx.

Two generators: schemathesis, which derives requests (JSON and NetCDF bodies, query parameters) from
the served OpenAPI schema, and hypothesis payloads that reach deeper than the schema's generic arrays:
the models' real input names with arrays of every small shape, with NaN, infinities and huge values.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def test_schemathesis_requests_from_the_openapi_schema_never_get_a_5xx(server):
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operation = schema["/v1/models/{name}/predict"]["POST"]
    statuses = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(base_url=server.url, timeout=60)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.path_parameters, case.media_type, response.text)

    check()
    assert statuses and all(s < 500 for s in statuses)
    with httpx.Client(base_url=server.url) as client:  # still serving
        assert client.get("/health").status_code == 200


ELEMENTS = st.one_of(
    st.floats(min_value=-1e4, max_value=1e4, width=32),
    st.sampled_from([3.0, 12.0, 0.1, 0.5, 1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e39, -1e39, 3e38]),
)


@st.composite
def well_formed_inputs(draw, model: dict):
    """Every input of the model with consistent shapes: most of these reach the model."""
    n = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=3)))
    sizes = {dim: draw(st.integers(min_value=1, max_value=20)) for dim in model["spatial_dims"]}
    if model["resolution"]["policy"] == "fixed" and draw(st.booleans()):
        sizes = dict(zip(model["spatial_dims"], model["resolution"]["trained"]))
    if model["kind"] == "reduced_basis":  # parameters inside the box most of the time
        elements = st.floats(min_value=0.1, max_value=1.0) | ELEMENTS
    else:
        elements = ELEMENTS
    out = {}
    for var in model["inputs"]:
        shape = ((n,) if n else ()) + tuple(sizes[d] for d in var["dims"])
        out[var["name"]] = draw(hnp.arrays(np.float64, shape, elements=elements)).tolist()
    return out


def junk_inputs(names: list[str]):
    """Arbitrary names and values: ragged lists, strings, nulls, booleans, wrong shapes."""
    arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6), elements=ELEMENTS)
    values = st.one_of(
        arrays.map(lambda a: a.tolist()),
        st.recursive(
            st.floats(allow_nan=False) | st.integers() | st.booleans() | st.none() | st.text(max_size=3),
            lambda inner: st.lists(inner, max_size=4),
            max_leaves=12,
        ),
    )
    return st.dictionaries(st.one_of(st.sampled_from(names), st.text(max_size=4)), values, max_size=len(names) + 1)


def test_hypothesis_payloads_for_the_real_inputs_never_get_a_5xx(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"] if m["status"] == "ready"}
        names = sorted(models)

        @FUZZ_SETTINGS
        @given(
            name=st.sampled_from(names),
            data=st.data(),
            steps=st.sampled_from([None] * 6 + [-1, 0, 1, 3]),
        )
        def check(name, data, steps):
            model = models[name]
            inputs = data.draw(st.one_of(well_formed_inputs(model), junk_inputs([v["name"] for v in model["inputs"]])))
            body = {"inputs": inputs} if steps is None else {"inputs": inputs, "steps": steps}
            content = json.dumps(body).encode()  # Python's json writes NaN and Infinity tokens, as many clients do
            response = client.post(f"/v1/models/{name}/predict", content=content, headers={"content-type": "application/json"})
            assert response.status_code < 500, (name, response.text)
            if response.status_code == 200:
                for value in response.json()["outputs"].values():
                    assert np.isfinite(np.asarray(value, dtype=np.float64)).all()
            else:
                assert response.json()["detail"]

        check()

