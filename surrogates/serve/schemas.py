"""Pydantic models of the HTTP API; they make the OpenAPI schema served at ``/openapi.json`` precise."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from surrogates.schema import DataSchema, Variable

NDARRAY_SCHEMA = {
    "title": "NDArray",
    "description": (
        "A number, or nested arrays of numbers (row-major). An input with dims D is sent with shape "
        "(n, *D) for n samples or with shape D for one sample; the answer keeps that layout."
    ),
    "anyOf": [{"type": "number"}, {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}}],
}

NDArray = Annotated[Any, WithJsonSchema(NDARRAY_SCHEMA)]

MAX_SEED = 2**64 - 1
"""The largest noise seed: torch's generators take 64-bit seeds."""


class PredictRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/predict`` as JSON (NetCDF bodies carry the same variables)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"inputs": {"a": [[3.0, 12.0, 12.0], [3.0, 3.0, 12.0], [12.0, 12.0, 3.0]]}}]},
    )

    inputs: dict[str, NDArray] = Field(
        description="One array per input variable of the model (see `GET /v1/models`: `inputs[].name`, `inputs[].dims`).",
    )
    steps: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Rollout: apply the model this many times, feeding each output back as the next input "
            "(only for models with `rollout: true`: inputs equal targets, or one-step models whose "
            "conditioning parameters are held fixed). The answer gains a `time` axis after `sample`: "
            "(n, steps, *spatial)."
        ),
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description=(
            "Seed of the noise of a stochastic model (`stochastic: true`, e.g. PDE-Refiner); default 0, so "
            "equal requests get equal answers. Deterministic models refuse it."
        ),
    )


COORDINATES_SCHEMA = {
    "title": "Coordinates",
    "description": "One coordinate of the query points: n numbers for n points, or a number for one point.",
    "anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}],
}

Coordinates = Annotated[Any, WithJsonSchema(COORDINATES_SCHEMA)]


class PointwisePredictRequest(BaseModel):
    """JSON body of ``POST /v1/models/{name}/predict`` for a pointwise model (PIG, PINN: ``kind: pointwise``).

    A pointwise model is the solution ``u(x)`` of one PDE instance on a box: its inputs are the
    coordinates of query points, one array per coordinate name (``GET /v1/models``: ``inputs[].name``,
    ``domain``), and it answers ``u`` at every point, ``(n,)`` (a number for one point). Points outside
    the domain box are refused (422 ``outside_domain``). NetCDF bodies carry the same variables with
    dims ``("sample",)``.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"inputs": {"x": [0.0, 0.5, -0.25], "y": [0.25, -1.0, 0.75]}}]},
    )

    inputs: dict[str, Coordinates] = Field(
        description="One array per coordinate of the model (its `inputs`), all of the same length n: point i is "
        "(x[i], y[i], ...).",
    )


class PredictResponse(BaseModel):
    """Answer of a JSON predict request."""

    model: str = Field(description="The model that answered.")
    outputs: dict[str, NDArray] = Field(description="One array per output variable, in the request's layout.")
    dims: dict[str, list[str]] = Field(description="Dimension names of every output array.")
    shape: dict[str, list[int]] = Field(description="Shape of every output array.")
    attrs: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Attributes of every output array: `long_name`, and `units` (the trained target's) when known.",
    )
    steps: int | None = Field(default=None, description="Rollout steps, when requested.")
    info: dict[str, Any] = Field(
        default_factory=dict, description="Method-specific details, e.g. a classical solver's iterations and residuals."
    )
    elapsed_ms: float = Field(description="Time from receiving the body to encoding the answer, milliseconds.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer."""

    detail: str = Field(description="What is wrong, naming the model, variable, shape or limit.")
    code: str = Field(description="Stable identifier of the problem, e.g. `wrong_shape`, `non_finite`, `unknown_model`.")


class ResolutionInfo(BaseModel):
    """Which grid sizes a model takes."""

    policy: Literal["any", "fixed", "multiple_of", "none"] = Field(
        description="`any`: any grid of at least `min_size` points per dim; `fixed`: exactly `trained`; "
        "`multiple_of`: sizes divisible by `multiple`; `none`: the model takes no fields."
    )
    trained: list[int] | None = Field(default=None, description="Grid the model was trained on or built for.")
    min_size: int = 1
    multiple: int | None = None
    equal_sizes: bool = Field(default=False, description="All spatial dims must have the same size (square grids).")


class ModelInfo(BaseModel):
    name: str = Field(description="Registry name: the file's path relative to `models_dir`, without suffix.")
    kind: Literal["surrogate", "solver", "reduced_basis", "pointwise"] = Field(
        description="`surrogate` (fields in, fields out), `solver`, `reduced_basis` (parameters in), `pointwise` "
        "(a PIG or PINN solution of one PDE instance: query points in, values out)."
    )
    status: Literal["ready", "unavailable"]
    error: str | None = Field(
        default=None,
        description="Why an unavailable model could not be loaded, in a few words (e.g. `cannot read checkpoint`, "
        "`unknown model name`); the server's log has the details.",
    )
    source: str = Field(description="Model file relative to `models_dir`, or the solver's PDE class.")
    pde: str | None = None
    description: str = ""
    inputs: list[Variable] = Field(
        default_factory=list, description="Dims of one sample each (a request adds a leading `sample` dim for batches)."
    )
    outputs: list[Variable] = Field(default_factory=list)
    spatial_dims: list[str] = Field(default_factory=list)
    data_schema: DataSchema | None = Field(
        default=None,
        description="The data the model was trained on, from its file: variables, coordinates with units, grid "
        "spacing and boundary kind, the trained grid.",
    )
    resolution: ResolutionInfo | None = None
    rollout: bool = Field(default=False, description="Whether `steps` is accepted.")
    stochastic: bool = Field(default=False, description="Whether answers depend on `seed` (noise in the model).")
    batching: bool = Field(default=False, description="Whether concurrent requests are micro-batched.")
    device: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Training metrics recorded with the model.")
    model: dict[str, Any] | None = Field(default=None, description="Architecture: class and constructor arguments.")
    domain: dict[str, list[float]] | None = Field(
        default=None, description="Pointwise models: the box they were trained on, coordinate -> [low, high]."
    )
    usage: dict[str, int | float | None] | None = Field(
        default=None,
        description="Since start-up: `requests` answered, model `calls` (fewer than requests when micro-batching "
        "gathered them), `samples`, `largest_batch`, `refused` (429: beyond `max_pending_requests` or "
        "`max_queue_ms`), `refused_for_time` (those beyond `max_queue_ms`), `most_pending` (most requests admitted "
        "at once), `ms_per_request` (the model's running mean of milliseconds per request; null before its first call).",
    )


class ModelList(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="`degraded` when some model files could not be loaded.")
    version: str
    ready: list[str] = Field(description="Names of the models that answer predictions.")
    unavailable: dict[str, str] = Field(
        description="Model name -> why it could not be loaded, in a few words (the server's log has the details)."
    )
    micro_batching: bool
