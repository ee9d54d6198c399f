"""The HTTP service: a FastAPI app over a :class:`~surrogates.serve.registry.Registry`.

Endpoints (documented in ``docs/serving.md``; the OpenAPI schema is served at ``/openapi.json``,
interactive docs at ``/docs``):

- ``GET /health``: status, the ready models and the files that failed to load;
- ``GET /v1/models``, ``GET /v1/models/{name}``: name, kind, PDE, input/output schema, accepted
  grids, rollout support, training metrics;
- ``POST /v1/models/{name}/predict``: JSON arrays or a NetCDF file in, the same form out; ``steps``
  rolls time-dependent models out autoregressively.

Request bodies are read with a size limit, decoded and checked on the event loop (in a thread when
large), and inference runs in the model's worker thread through its
:class:`~surrogates.serve.batching.MicroBatcher`: the event loop never waits on a model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from surrogates import __version__
from surrogates.serve import codecs
from surrogates.serve.admission import Admission
from surrogates.serve.auth import BearerAuth
from surrogates.serve.batching import MicroBatcher, timed
from surrogates.serve.errors import ServiceError, unprocessable
from surrogates.serve.inputs import dims_named_as_sent, next_times, sent_dim_names, source_dim_names
from surrogates.serve.openapi import ERROR_RESPONSES, PREDICT_OPENAPI, service_openapi
from surrogates.serve.registry import ModelEntry, Registry
from surrogates.serve.schemas import (
    MAX_SEED,
    HealthResponse,
    ModelInfo,
    ModelList,
    PredictResponse,
)
from surrogates.serve.work import CancelToken, Cancelled, advance, deadline_of, guard

log = logging.getLogger("surrogates.serve")


@dataclass
class ServeSettings:
    """Service limits and batching (the ``conf/serve.yaml`` keys of the same names).

    Attributes
    ----------
    micro_batching
        Gather concurrent requests per model into one call (``False``: each request runs alone).
    max_batch_size
        Most samples per batched call.
    max_wait_ms
        Longest a request waits for companions before its batch runs.
    max_body_bytes
        Larger bodies are refused with 413 (from ``Content-Length`` or while streaming).
    max_elements
        Most input values (samples x variables x grid points) per request; more is refused with 413.
    max_steps
        Largest ``steps`` of a rollout request.
    max_output_elements
        Most output values (samples x steps x grid points x output variables) per request, checked before
        the model runs; more is refused with 413.
    max_decoded_bytes
        Most bytes that reading a NetCDF body's inputs may decompress (whole chunks and HDF5's bookkeeping of
        each, coordinates and component labels included), checked from the file's header before any data is
        read; ``None``: ``8 * max_elements``.
    max_chunks
        Most HDF5 chunks that reading a NetCDF body's inputs, coordinates and labels may touch, each variable and
        all of them together (HDF5 spends about 15 us and 4 KiB on every chunk, however small); more is refused
        with 422 ``too_many_chunks``.
    max_variables
        Most variables of a request: of a NetCDF body (a NetCDF-4 body: objects in its root group, counted before
        they are opened) or keys of a JSON body's ``inputs``; more is refused with 413 ``too_many_variables``.
    max_attributes
        Most attributes read from a NetCDF body: those of the variables a request reads (NetCDF-4), or all of them
        (NetCDF-3, whose reader parses every one); more is refused with 413 ``too_many_attributes``.
    offload_bytes
        Bodies larger than this are decoded and answers encoded in a thread instead of on the event loop.
    request_timeout_s
        Deadline of a request from its arrival, seconds: past it the answer is 504 and the model's work
        stops at its next step or batch boundary; ``None`` or ``0``: no deadline.
    rollout_slice_ms
        A rollout holds its model's worker thread for about this long (at least one step) before the
        requests waiting for the model run, so that a long rollout delays a short request by about one slice.
    max_pending_requests
        Most requests a model has admitted and not yet answered (decoding, queued, running, encoding); one
        more is refused at once with 429 and ``Retry-After``. ``None``: ``max_batch_size`` (on a compute-bound
        model, an admitted request waits for at most about one batch's worth of samples).
    max_queue_ms
        Longest an admitted request may expect to wait for the requests a model already works on,
        milliseconds: pending requests x the model's measured milliseconds per request (a running mean of its
        calls); a request that would wait longer is refused at once with 429. A request that finds the model
        idle is always admitted. ``None``: only ``max_pending_requests`` bounds the wait.
    retry_after_s
        The ``Retry-After`` of a 429, seconds (a whole number is sent, at least 1).
    api_token
        When set, every route but ``GET /health`` needs ``Authorization: Bearer <api_token>`` (401 otherwise).
        Not shown by ``repr``.
    """

    micro_batching: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_elements: int = 1 << 24
    max_steps: int = 1000
    max_output_elements: int = 1 << 24
    max_decoded_bytes: int | None = None
    max_chunks: int = codecs.MAX_CHUNKS
    max_variables: int = codecs.MAX_VARIABLES
    max_attributes: int = codecs.MAX_ATTRIBUTES
    offload_bytes: int = 256 * 1024
    request_timeout_s: float | None = 30.0
    rollout_slice_ms: float = 100.0
    max_pending_requests: int | None = None
    max_queue_ms: float | None = None
    retry_after_s: float = 1.0
    api_token: str | None = field(default=None, repr=False)


def create_app(registry: Registry, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``registry`` with ``settings``."""
    settings = settings or ServeSettings()
    executors = {
        name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        for name, entry in registry.entries.items()
        if entry.ready
    }
    batchers = {
        name: MicroBatcher(
            registry.entries[name].runner,
            executor,
            enabled=settings.micro_batching and registry.entries[name].batchable,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            chunk_size=settings.max_batch_size if registry.entries[name].chunked else None,
        )
        for name, executor in executors.items()
    }
    pending_limit = settings.max_pending_requests or settings.max_batch_size
    if settings.max_queue_ms is not None and not settings.max_queue_ms > 0:
        raise ValueError(f"max_queue_ms must be > 0 or null, got {settings.max_queue_ms}")
    admissions = {
        name: Admission(
            name, pending_limit, settings.retry_after_s,
            max_queue_s=None if settings.max_queue_ms is None else settings.max_queue_ms / 1000,
            request_seconds=lambda stats=batcher.stats: stats.request_seconds,
        )
        for name, batcher in batchers.items()
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for entry in registry.unavailable:
            log.error("model %s is unavailable: %s (%s)", entry.name, entry.error, entry.source)
        log.info("serving %d model(s): %s", len(registry.ready), ", ".join(e.name for e in registry.ready))
        yield
        for batcher in batchers.values():
            await batcher.close()
        for executor in executors.values():
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="surrogates",
        version=__version__,
        description=(
            "PDE surrogates and classical reference solvers behind one prediction endpoint. "
            "Send the inputs of a model as JSON arrays or as a NetCDF file; the answer comes in the same form."
        ),
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.settings = settings
    app.state.batchers = batchers
    app.state.admissions = admissions

    # -- errors ---------------------------------------------------------------------------------------
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": error.message, "code": error.code}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()[:5]]
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems), "code": "invalid_request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405 and "Allow" in headers:  # the methods of the path, as OPTIONS answers them
            headers["Allow"] = _allow(m.strip() for m in headers["Allow"].split(","))
        return JSONResponse(
            {"detail": str(error.detail), "code": f"http_{error.status_code}"},
            status_code=error.status_code,
            headers=headers or None,
        )

    # -- endpoints ------------------------------------------------------------------------------------
    @app.get("/health", response_model=HealthResponse, tags=["service"], summary="Service status")
    async def health() -> dict[str, Any]:
        unavailable = {e.name: e.reason or "cannot load model" for e in registry.unavailable}
        return {
            "status": "degraded" if unavailable else "ok",
            "version": __version__,
            "ready": [e.name for e in registry.ready],
            "unavailable": unavailable,
            "micro_batching": settings.micro_batching,
        }

    @app.get("/v1/models", response_model=ModelList, tags=["models"], summary="Every registered model")
    async def list_models() -> dict[str, Any]:
        return {"models": [_info(entry) for entry in registry.entries.values()]}

    def _info(entry: ModelEntry) -> dict[str, Any]:
        info = entry.info(settings.micro_batching)
        batcher = batchers.get(entry.name)
        if batcher is not None:
            stats = batcher.stats
            info["usage"] = {
                "requests": stats.requests,
                "calls": stats.calls,
                "samples": stats.samples,
                "largest_batch": stats.largest_batch,
                "refused": admissions[entry.name].stats.refused,
                "refused_for_time": admissions[entry.name].stats.refused_for_time,
                "most_pending": admissions[entry.name].stats.most_pending,
                "ms_per_request": None if stats.request_seconds is None else round(1000 * stats.request_seconds, 3),
            }
        return info

    @app.api_route(
        "/v1/models/{name:path}/predict",
        methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    async def predict_other_methods(name: str, request: Request) -> Response:
        registry.get(name)
        allow = {"Allow": _allow(["POST"])}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=allow)
        raise StarletteHTTPException(405, f"use POST /v1/models/{name}/predict", headers=allow)

    @app.post(
        "/v1/models/{name:path}/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=PREDICT_OPENAPI,
        tags=["models"],
        summary="Predict with a model (JSON or NetCDF in, the same form out)",
    )
    async def predict(
        name: str,
        request: Request,
        steps: int | None = Query(
            default=None,
            ge=1,
            description="Rollout steps (for NetCDF bodies; JSON bodies may also use the `steps` field).",
        ),
        seed: int | None = Query(
            default=None,
            ge=0,
            le=MAX_SEED,
            description="Noise seed of a stochastic model (for NetCDF bodies; JSON bodies may also use the `seed` field).",
        ),
    ) -> Response:
        started, arrived = time.perf_counter(), time.monotonic()
        entry = registry.get(name)
        if not entry.ready:
            raise ServiceError(503, "model_unavailable", f"model {name!r} is unavailable: {entry.reason or 'cannot load model'}")
        kind = codecs.body_kind(request.headers.get("content-type"))
        body = await read_body(request, settings.max_body_bytes)
        # Admitted after its body arrived (a slow sender holds no slot), before any decoding work.
        with admissions[name].admit():
            answering = _answer(request, entry, kind, body, steps, seed, started, arrived)
            del body  # the coroutine holds the only reference and drops it once the body is decoded
            return await answering

    async def _answer(
        request: Request, entry: ModelEntry, kind: str, body: bytes, steps: int | None, seed: int | None,
        started: float, arrived: float,
    ) -> Response:
        """Decode, check, run and encode one admitted request."""
        name = entry.name
        offload = len(body) > settings.offload_bytes
        deadline = deadline_of(arrived, settings.request_timeout_s)  # decoding stops between variables past it
        # a body in the dim names of the model's source file is refused in them, as Surrogate.predict refuses it
        renames: dict[str, str] = {}
        sent: dict[str, str] = {}  # the trained dims -> the body's names (sent_dim_names), once the body is read
        with dims_named_as_sent(sent):
            if kind == "json":
                arrays, steps_in_body, seed_in_body = await _maybe_thread(
                    offload, codecs.decode_json_request, body, settings.max_variables, deadline, settings.request_timeout_s
                )
                coords, engine, sample_dim, whole_fields, windowed = {}, None, "sample", {}, False
                steps = _agree("steps", steps, steps_in_body)
                seed = _agree("seed", seed, seed_in_body)
            else:
                specs, components = {v.name: v.dims for v in entry.inputs}, entry.components
                netcdf = codecs.NetcdfBody(body, settings.max_variables, settings.max_attributes)  # names listed once
                if entry.source_dims:  # a body in the dim names of the model's source file is read in the trained ones
                    body_dims, body_names = await _maybe_thread(offload, _body_names, netcdf)
                    netcdf.rename_dims(entry.body_renames(body_dims, body_names))
                    sent.update(sent_dim_names(entry.source_dims, netcdf.renames, body_dims))
                # a windowed model takes its channels (u_t0, u_t1), or the trajectories as stored (u with a time dim)
                windowed = entry.window is not None and not set(specs) & await _maybe_thread(offload, netcdf.variable_names)
                if windowed:
                    specs, components = entry.window_specs()
                renames = netcdf.renames
                arrays, coords, engine, sample_dim, whole_fields, units = await _maybe_thread(
                    offload, codecs.read_netcdf, netcdf, specs, settings.max_elements, settings.max_decoded_bytes,
                    entry.sample_dims, components, settings.max_chunks, deadline, settings.request_timeout_s,
                    entry.time_dims, entry.input_time,  # a one-state model also takes trajectories (the state at input_time)
                )
                del netcdf  # holds the body too
                entry.check_body_units(units, coords, windowed)  # kPa for a model trained in Pa: refused, not 1000x off
                if windowed:
                    single = next(iter(arrays.values())).ndim == len(entry.spatial_dims) + 1
                    arrays = entry.split_windows(arrays, single)
                    input_times = coords.pop(entry.time_dim, None)  # the inputs' times: the answer's come after them
            del body  # the bytes are decoded: free them before the model runs (16 MiB at most)
            if steps is not None:
                if not entry.rollout:
                    raise unprocessable(
                        "steps_not_supported",
                        f"model {name!r} cannot roll out: its outputs {[v.name for v in entry.outputs]} are not its inputs "
                        f"{[v.name for v in entry.inputs]}; send no steps",
                    )
                if steps > settings.max_steps:
                    raise unprocessable("too_many_steps", f"steps={steps} exceeds the service's max_steps={settings.max_steps}")
            if seed is not None and not entry.stochastic:
                raise unprocessable("seed_not_supported", f"model {name!r} is deterministic; send no seed")
            prepared = entry.prepare(arrays, settings.max_elements)
            del arrays  # stacked into prepared.x
            entry.check_grid(coords)  # a NetCDF body's coordinates cover the trained domain (JSON bodies carry none)
        produced = entry.output_elements(prepared, steps)
        if produced > settings.max_output_elements:
            raise ServiceError(
                413, "too_many_output_values",
                f"the answer would hold {produced} values ({prepared.n} sample(s) x {steps or 1} step(s) x the output "
                f"fields); the limit is {settings.max_output_elements} (max_output_elements): send fewer samples or steps",
            )
        try:
            outputs, info = await _run_in_time(request, entry, batchers[name], prepared.x, steps, seed or 0, arrived, settings)
        except Cancelled:  # the client went away: nobody reads an answer
            return Response(status_code=499)
        answer = {}
        for var in entry.outputs:
            dims = ([sample_dim] if not prepared.single else []) + (["time"] if steps else []) + list(var.dims)
            value = outputs[var.name]
            answer[var.name] = (dims, value[0] if prepared.single else value)
        if kind == "json":
            var_attrs = {var: entry.answer_attrs(var) for var in answer}
            content = await _maybe_thread(offload, codecs.encode_json_answer, name, answer, var_attrs, steps, info, started)
            return Response(content, media_type=codecs.JSON_MEDIA_TYPE)
        if windowed:  # the stored layout: u (sample, time, *spatial), vector fields whole
            answer, labels = entry.assemble_window_fields(entry.join_windows(answer))
            coords.update({dim: (np.asarray(values), {}) for dim, values in labels.items()})
            times = None if input_times is None else next_times(input_times[0], entry.window["n_steps_output"])
            if times is not None:  # the inputs' times continued, with their attributes
                coords[entry.time_dim] = (times, input_times[1])
        elif kind != "json" and (whole_fields or entry.trained_on_user_files):
            # vector fields whole, as the body sent them or the user's training file stores them; in the model's order
            answer, labels = entry.assemble_fields(answer)
            coords.update({dim: (np.asarray(values), {}) for dim, values in labels.items()})
        if steps:
            coords["time"] = (np.arange(1, steps + 1, dtype=np.int32), {"long_name": "rollout step"})
        if renames:  # answered in the names the body was sent in, as Surrogate.predict answers
            answer, coords = _renamed_answer(answer, coords, source_dim_names(renames))
        attrs = {"model": name, "steps": steps or 0, "info": info, "elapsed_ms": 1000 * (time.perf_counter() - started)}
        variable_attrs = {var: entry.answer_attrs(var) for var in answer}
        content = await _maybe_thread(offload, codecs.write_netcdf, answer, coords, attrs, engine, variable_attrs)
        return Response(content, media_type=codecs.NETCDF_MEDIA_TYPE)

    @app.get(
        "/v1/models/{name:path}",
        response_model=ModelInfo,
        responses={404: ERROR_RESPONSES[404]},
        tags=["models"],
        summary="One model's schema and metrics",
    )
    async def model_info(name: str) -> dict[str, Any]:
        return _info(registry.get(name))

    app.add_middleware(_AnswerOptions, routes=app.router.routes, skip=predict_other_methods)
    if settings.api_token:  # added last, so it runs first: OPTIONS and unknown paths need the token too
        app.add_middleware(BearerAuth, token=settings.api_token, open_paths=("/health",))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = service_openapi(app, registry, settings.api_token)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# -- helpers ------------------------------------------------------------------------------------------
class _AnswerOptions:
    """ASGI middleware answering ``OPTIONS`` with 204 and the ``Allow`` header of the route the path reaches
    (the same methods as its 405 answers); the route ``skip`` answers OPTIONS itself, a path no route
    reaches gets the router's 404."""

    def __init__(self, app: Any, routes: list, skip: Any):
        self.app, self.routes, self.skip = app, routes, skip

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            for route in self.routes:
                if route.matches(scope)[0] != Match.NONE and getattr(route, "methods", None):
                    if getattr(route, "endpoint", None) is not self.skip:
                        await Response(status_code=204, headers={"Allow": _allow(route.methods)})(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _allow(methods: Any) -> str:
    """An ``Allow`` header: the given methods and OPTIONS, sorted."""
    return ", ".join(sorted({str(m).upper() for m in methods} | {"OPTIONS"}))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) by ``Content-Length`` or while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ServiceError(400, "invalid_content_length", f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise ServiceError(
                413, "body_too_large", f"the body has {size} bytes; the limit is {limit} bytes (max_body_bytes)"
            )
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ServiceError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    if not received:
        raise ServiceError(400, "empty_body", "the request has no body; send JSON inputs or a NetCDF file")
    return b"".join(chunks)


def _body_names(netcdf: codecs.NetcdfBody) -> tuple[set[str], set[str]]:
    """A NetCDF body's dim and variable names (one look at its header)."""
    return netcdf.dim_names(), netcdf.variable_names()


def _renamed_answer(
    answer: dict[str, tuple[list[str], np.ndarray]], coords: dict[str, Any], names: dict[str, str]
) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, Any]]:
    """An answer's variables and coordinates with their dims renamed by ``names`` (the trained name -> the body's)."""
    answer = {var: ([names.get(dim, dim) for dim in dims], values) for var, (dims, values) in answer.items()}
    return answer, {names.get(dim, dim): value for dim, value in coords.items()}


def _agree(field: str, query: int | None, body: int | None) -> int | None:
    """A value given in the query, the JSON body, or both (then equal)."""
    if query is not None and body is not None and query != body:
        raise unprocessable("invalid_request", f"{field}={query} in the query and {body} in the body disagree")
    return body if body is not None else query


async def _maybe_thread(offload: bool, fn: Any, *args: Any) -> Any:
    return await run_in_threadpool(fn, *args) if offload else fn(*args)


async def _run_in_time(
    request: Request,
    entry: ModelEntry,
    batcher: MicroBatcher,
    x: np.ndarray,
    steps: int | None,
    seed: int,
    arrived: float,
    settings: ServeSettings,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`_run`, stopped at its next step or batch when the request's deadline passes (504) or its client
    disconnects (:class:`~surrogates.serve.work.Cancelled`); ``arrived``: ``time.monotonic()`` at arrival."""
    token = CancelToken()
    work = _run(entry, batcher, x, steps, seed, token, settings.rollout_slice_ms / 1000)
    deadline = deadline_of(arrived, settings.request_timeout_s)
    try:
        return await guard(work, token, request, deadline, settings.request_timeout_s or 0)
    except Cancelled:
        log.info("request to %s stopped: the client disconnected", entry.name)
        raise
    except ServiceError as error:
        if error.code == "deadline_exceeded":
            log.warning("request to %s stopped after %.1f s: %s", entry.name, time.monotonic() - arrived, error.message)
        raise


async def _run(
    entry: ModelEntry,
    batcher: MicroBatcher,
    x: np.ndarray,
    steps: int | None,
    seed: int,
    token: CancelToken,
    slice_s: float,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One prediction, or a rollout of ``steps`` predictions (each output fed back as the next input).

    Every step is a separate job of the model's worker thread, so other requests run between the
    steps of a rollout, and a cancelled request (``token``, or this coroutine cancelled) stops at a step
    boundary. A model that rolls out itself (``entry.rollout_runner``) runs in slices of about
    ``slice_s`` seconds (:func:`_roll_in_slices`).
    """
    if entry.rollout_runner is not None:
        return await _roll_in_slices(entry, batcher, x, steps, seed, token, slice_s)
    if not steps:
        return await _submit(entry, batcher, x)
    frames, info = [], {}
    for step in range(steps):
        if token.cancelled:
            raise Cancelled(token.reason or "cancelled")
        outputs, info = await _submit(entry, batcher, x, step)
        frames.append(outputs)
        x = np.stack([outputs[v.name] for v in entry.inputs], axis=1)
    return _stack(entry, frames), info


async def _roll_in_slices(
    entry: ModelEntry, batcher: MicroBatcher, x: np.ndarray, steps: int | None, seed: int, token: CancelToken,
    slice_s: float,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A model that rolls out itself, with the noise ``seed``: its steps in slices of about ``slice_s``
    seconds of the worker thread each (:func:`~surrogates.serve.work.advance`); requests queued on the
    thread meanwhile run between two slices. Without ``steps``: one step, without the time axis. Each
    slice's seconds count as one request's in ``batcher.stats`` (a request queued behind a rollout waits
    for about one slice), for ``max_queue_ms``."""
    assert entry.rollout_runner is not None
    loop = asyncio.get_running_loop()
    frames: list[tuple[dict[str, np.ndarray], dict[str, Any]]] = []
    try:
        stepper = entry.rollout_runner(x, seed)
        while len(frames) < (steps or 1):
            done, seconds = await loop.run_in_executor(
                batcher.executor, timed, advance, stepper, (steps or 1) - len(frames), slice_s, token
            )
            batcher.stats.record_time(1, seconds)
            for k, (outputs, _) in enumerate(done, start=len(frames)):  # a NaN stops the rollout where it appears
                _check_finite(entry, outputs, k if steps else None)
            frames += done
            if token.cancelled:
                raise Cancelled(token.reason or "cancelled")
    except ValueError as error:
        raise unprocessable("model_rejected_input", f"model {entry.name!r} rejected the input: {error}") from None
    except (ServiceError, Cancelled):
        raise
    except Exception as error:
        raise model_failed(entry, error) from None
    info = frames[-1][1]
    return (_stack(entry, [outputs for outputs, _ in frames]) if steps else frames[0][0]), info


def _stack(entry: ModelEntry, frames: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-step outputs ``name -> (B, *dims)`` as ``name -> (B, steps, *dims)``."""
    return {v.name: np.stack([frame[v.name] for frame in frames], axis=1) for v in entry.outputs}


async def _submit(entry: ModelEntry, batcher: MicroBatcher, x: np.ndarray, step: int | None = None):
    try:
        outputs, info = await batcher.submit(x)
    except ValueError as error:  # the model refused this input (e.g. a grid it cannot take)
        raise unprocessable("model_rejected_input", f"model {entry.name!r} rejected the input: {error}") from None
    except Exception as error:
        raise model_failed(entry, error) from None
    _check_finite(entry, outputs, step)
    return outputs, info


def model_failed(entry: ModelEntry, error: Exception) -> ServiceError:
    """500 ``model_failed`` for a model that raised on a request (e.g. ``RuntimeError`` of a solver that did not
    converge), the traceback logged.

    Without it the error escaped the endpoint as a plain-text 500 outside the documented
    ``{"detail", "code"}`` form. The answer names the exception's type, not its message, which may hold paths.
    """
    log.error("model %s failed on a request", entry.name, exc_info=(type(error), error, error.__traceback__))
    return ServiceError(
        500, "model_failed",
        f"model {entry.name!r} failed on this input ({type(error).__name__}); the service log has the details",
    )


def _check_finite(entry: ModelEntry, outputs: dict[str, np.ndarray], step: int | None = None) -> None:
    for name, value in outputs.items():
        if not np.all(np.isfinite(value)):
            where = f" at rollout step {step + 1}" if step is not None else ""
            raise unprocessable(
                "non_finite_output",
                f"model {entry.name!r} produced NaN or infinite {name!r}{where}; the input is probably far outside "
                "the range the model was trained on",
            )
