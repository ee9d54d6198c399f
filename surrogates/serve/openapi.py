"""The service's OpenAPI document: the documented error answers, the predict operation's bodies, and the
request schemas that depend on the served models (served at ``/openapi.json``)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from surrogates.serve import codecs
from surrogates.serve.auth import declare_bearer_security
from surrogates.serve.registry import ModelEntry, Registry
from surrogates.serve.schemas import ErrorResponse, PointwisePredictRequest, PredictRequest

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed JSON or NetCDF body."},
    404: {"model": ErrorResponse, "description": "Unknown model."},
    413: {"model": ErrorResponse, "description": "Body or input larger than the service's limits."},
    415: {"model": ErrorResponse, "description": "Content-Type other than JSON or NetCDF."},
    429: {
        "model": ErrorResponse,
        "description": "The model already works on `max_pending_requests` requests, or on more than `max_queue_ms` of "
        "work; retry after `Retry-After` seconds.",
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
    },
    422: {
        "model": ErrorResponse,
        "description": "Wrong variables, shape or grid, NaN or infinite values, `steps` on a model without rollout, "
        "query points outside a pointwise model's domain.",
    },
    500: {"model": ErrorResponse, "description": "The model raised an error other than `ValueError` on this input (`model_failed`), e.g. a solver that did not converge."},
    503: {"model": ErrorResponse, "description": "The model file could not be loaded (see `GET /health`)."},
    504: {
        "model": ErrorResponse,
        "description": "The request did not finish within the service's `request_timeout_s`; its work was stopped.",
    },
}

PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "JSON arrays, or a NetCDF file (NetCDF-4/HDF5 or NetCDF-3) holding the input variables.",
        "content": {
            codecs.JSON_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
            codecs.NETCDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "Predictions in the request's form: JSON (`PredictResponse`) or a NetCDF file.",
            "content": {codecs.NETCDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
}


def service_openapi(app: FastAPI, registry: Registry, api_token: str | None) -> dict[str, Any]:
    """The OpenAPI document of the service ``app`` over ``registry``.

    FastAPI's document of the routes, completed with what depends on the served models: the JSON request forms
    of the field models (:func:`_add_request_schemas`) and of the pointwise models
    (:func:`_add_pointwise_schemas`), the models that take the ``steps`` and ``seed`` query parameters, the
    ready models' names as the choices of the path's ``name``, and the bearer scheme when ``api_token`` is set.

    Parameters
    ----------
    app
        The service's application (its title, version, description and routes).
    registry
        The models served; only the ready ones appear.
    api_token
        The service's token, if any: then every route but ``GET /health`` declares the bearer scheme.

    Returns
    -------
    dict
        The OpenAPI document, to be cached as ``app.openapi_schema``.
    """
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    # `steps` and `seed` appear only in the request forms of the models that take them; the query
    # parameters serve every model, so their descriptions name the models (the others answer 422).
    _add_request_schemas(schema, registry)
    _name_query_takers(schema, registry)
    _add_pointwise_schemas(schema, registry)
    _list_model_names(schema, registry)
    if api_token:
        declare_bearer_security(schema, open_paths=("/health",))
    return schema


def _name_query_takers(schema: dict[str, Any], registry: Registry) -> None:
    """The descriptions of the ``steps`` and ``seed`` query parameters, completed with the ready models that take
    them (the others answer 422 ``steps_not_supported``, ``seed_not_supported``)."""
    takers = {
        "steps": (sorted(e.name for e in registry.ready if e.rollout), "steps_not_supported"),
        "seed": (sorted(e.name for e in registry.ready if e.stochastic), "seed_not_supported"),
    }
    for field_name, (names, code) in takers.items():
        note = f" Only for the models {names}; any other model answers 422 `{code}`." if names else (
            f" No served model takes it (422 `{code}`)."
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "query" and parameter.get("name") == field_name:
                        parameter["description"] = parameter.get("description", "") + note


def _list_model_names(schema: dict[str, Any], registry: Registry) -> None:
    """The path parameter ``name`` as a choice among the ready models, so that clients (and schema-driven fuzzers)
    see the choices."""
    names = sorted(entry.name for entry in registry.ready)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "name" and names:
                    parameter["schema"] = {"type": "string", "enum": names, "title": "Name"}


def _add_request_schemas(schema: dict[str, Any], registry: Registry) -> None:
    """The JSON request forms of the field models in an OpenAPI document: ``steps`` and ``seed`` only where
    some ready model takes them.

    ``PredictRequest`` (``inputs`` only) fits every model. Models that roll out, or take a noise seed, get
    ``PredictRequest_steps``, ``PredictRequest_seed`` or ``PredictRequest_steps_seed``, whose description
    names them; the JSON body of ``predict`` is any of these forms.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    full = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(full.pop("$defs", {}))
    optional = ("steps", "seed")
    groups: dict[tuple[str, ...], list[str]] = {}
    for entry in registry.ready:
        if entry.kind != "pointwise":
            takes = (("steps",) if entry.rollout else ()) + (("seed",) if entry.stochastic else ())
            groups.setdefault(takes, []).append(entry.name)
    refs = []
    for takes in [(), *sorted(key for key in groups if key)]:
        key = "_".join(("PredictRequest", *takes))
        form = copy.deepcopy(full)
        form["title"] = key
        form["properties"] = {k: v for k, v in full["properties"].items() if k not in optional or k in takes}
        if takes:
            form["description"] = f"Body of `predict` for the model(s) {sorted(groups[takes])}, which take {list(takes)}."
        components[key] = form
        refs.append({"$ref": f"#/components/schemas/{key}"})
    operation = schema["paths"]["/v1/models/{name}/predict"]["post"]
    operation["requestBody"] = copy.deepcopy(operation["requestBody"])  # PREDICT_OPENAPI's dict is shared
    json_body = operation["requestBody"]["content"][codecs.JSON_MEDIA_TYPE]
    json_body["schema"] = refs[0] if len(refs) == 1 else {"anyOf": refs}


def _add_pointwise_schemas(schema: dict[str, Any], registry: Registry) -> None:
    """The request schemas of pointwise models (PIG, PINN) in an OpenAPI document.

    ``PointwisePredictRequest`` (one array per coordinate) is always a component; for every set of
    coordinates of the ready pointwise models, ``PointwisePredictRequest_<coordinates>`` names them
    (and their box, when the models share it), and the JSON body of ``predict`` is either form.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    generic = PointwisePredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(generic.pop("$defs", {}))
    components["PointwisePredictRequest"] = generic
    groups: dict[tuple[str, ...], list[ModelEntry]] = {}
    for entry in registry.ready:
        if entry.kind == "pointwise":
            groups.setdefault(tuple(v.name for v in entry.inputs), []).append(entry)
    refs = []
    for coordinates, entries in sorted(groups.items()):
        domains = {json.dumps(getattr(entry, "domain", None), sort_keys=True) for entry in entries}
        domain = json.loads(domains.pop()) if len(domains) == 1 else None
        properties = {}
        for name in coordinates:
            number: dict[str, Any] = {"type": "number"}
            if domain and name in domain:
                number.update(minimum=domain[name][0], maximum=domain[name][1])
            properties[name] = {"anyOf": [number, {"type": "array", "items": number, "minItems": 1}]}
        key = "PointwisePredictRequest_" + "_".join(re.sub(r"[^A-Za-z0-9.-]", "-", name) for name in coordinates)
        components[key] = {
            **generic,
            "title": key,
            "description": f"Query points of the pointwise model(s) {[e.name for e in entries]}: one array per "
            f"coordinate {list(coordinates)}" + (f", inside {domain}" if domain else "") + ".",
            "properties": {
                **generic["properties"],
                "inputs": {
                    **generic["properties"]["inputs"], "type": "object", "properties": properties,
                    "required": list(coordinates), "additionalProperties": False,
                },
            },
        }
        refs.append({"$ref": f"#/components/schemas/{key}"})
    if refs:  # after _add_request_schemas, which made the operation's requestBody a copy of PREDICT_OPENAPI's
        json_body = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"][codecs.JSON_MEDIA_TYPE]
        json_body["schema"] = {"anyOf": [*json_body["schema"].get("anyOf", [json_body["schema"]]), *refs]}
