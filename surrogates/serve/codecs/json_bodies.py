"""JSON request and answer bodies: nested JSON lists <-> float32 numpy arrays.

Malformed JSON is refused with 400, a well-formed body of the wrong structure or with ragged, non-numeric or
out-of-range arrays with 422. In JSON, a float32 is written as the shortest decimal that reads back as the same
float64, which converts back to the same float32: JSON answers are exact, bit for bit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from surrogates.serve.codecs.body_limits import check_deadline
from surrogates.serve.errors import ServiceError, bad_request, unprocessable
from surrogates.serve.schemas import PredictRequest

try:  # optional: fast, exact float32 JSON
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def parse_json_request(body: bytes) -> PredictRequest:
    """Validate a JSON predict request (400 when it is not JSON, 422 when its structure is wrong)."""
    try:
        return PredictRequest.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            detail = problems[0].get("ctx", {}).get("error") or problems[0]["msg"]
            raise bad_request("malformed_json", f"the body is not valid JSON: {detail}") from None
        if any(p["type"] == "model_type" for p in problems):
            raise unprocessable("invalid_request", 'the JSON body must be an object like {"inputs": {"a": [[...]]}}') from None
        messages = [f"{'.'.join(str(part) for part in p['loc']) or 'body'}: {p['msg']}" for p in problems[:5]]
        raise unprocessable("invalid_request", "invalid request: " + "; ".join(messages)) from None


def json_array(name: str, value: Any, booleans: bool = True) -> np.ndarray:
    """A nested JSON list (or a number) as a float32 array, refusing ragged, non-numeric and out-of-range data.

    ``booleans``: whether the value may hold JSON ``true`` or ``false`` (a caller that has the body's bytes knows
    when it cannot: neither word occurs in them). When it may, the lists are searched for them: numpy would turn
    booleans mixed with numbers into 1.0 and 0.0 without a word. Integers beyond 64 bits are read as floats (as
    ``1e39`` is), so that a value beyond float32's range is refused as infinite, like any other.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        kind = "null" if value is None else type(value).__name__
        raise unprocessable("invalid_array", f"input {name!r} must be a number or nested arrays of numbers, got {kind}")
    if booleans and _holds_booleans(value):
        raise unprocessable("invalid_array", f"input {name!r} must hold only numbers; it holds booleans")
    by_items = _items_as_float32(value)
    if by_items is not None:
        return by_items
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError) as error:
        raise unprocessable(
            "invalid_array",
            f"input {name!r} is not a rectangular array (nested lists of different lengths?): {error}",
        ) from None
    if array.dtype.kind == "O" and all(type(v) in (int, float) for v in array.flat):
        return _wide_integers(name, array)
    if array.dtype.kind not in "fiu":
        what = "booleans" if array.dtype.kind == "b" else "nulls, strings or values of several kinds"
        if array.dtype.kind == "O" and _is_ragged(value):
            what = "nested lists of different lengths (not a rectangular array)"
        raise unprocessable("invalid_array", f"input {name!r} must hold only numbers; it holds {what}")
    with np.errstate(over="ignore"):
        return array.astype(np.float32)


def _holds_booleans(value: Any) -> bool:
    """Whether a nested list holds ``True`` or ``False`` anywhere (``type(v) is bool``: ``1 == True`` does not count)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is not list:
            if type(item) is bool:
                return True
            continue
        kinds = set(map(type, item))  # one C-level pass per list
        if bool in kinds:
            return True
        if list in kinds:
            pending.extend(v for v in item if type(v) is list)
    return False


def _wide_integers(name: str, array: np.ndarray) -> np.ndarray:
    """An object array of Python numbers (integers beyond 64 bits among them) as float32, through float64 like
    every integer: beyond float32's range they become infinite and are refused as such."""
    try:
        wide = array.astype(np.float64)
    except OverflowError:
        raise unprocessable(
            "non_finite",
            f"input {name!r} holds an integer beyond the range of floats (about 1.8e308); values beyond float32's "
            "range, about 3.4e38, count as infinite",
        ) from None
    with np.errstate(over="ignore"):
        return wide.astype(np.float32)


ITEMWISE_VALUES = 1 << 16
"""JSON arrays of at least this many numbers are converted one outer item at a time (:func:`json_array`)."""


def _items_as_float32(value: Any) -> np.ndarray | None:
    """A nested list of numbers converted one outer item at a time (the same float32 values as converting it
    whole), or ``None`` when it is not a list of equally shaped numeric lists (then the whole conversion
    finds the error and names it).

    One ``np.asarray`` of millions of numbers is one C call that holds the GIL for a few hundred ms (the
    event loop stalls even when decoding runs in a thread); item by item, other threads run between items.
    Integers go through float64 as in a whole conversion, so the results are the same bits.
    """
    if not isinstance(value, list) or len(value) < 2 or not isinstance(value[0], list):
        return None
    size, inner = 1, value
    while isinstance(inner, list) and inner:  # the size if the array is rectangular: a cheap estimate
        size, inner = size * len(inner), inner[0]
    if size < ITEMWISE_VALUES:  # converting it whole is faster and stalls nothing for long
        return None
    parts, shape = [], None
    for item in value:
        try:
            part = np.asarray(item)
        except (ValueError, OverflowError):
            return None
        if part.dtype.kind not in "fiu" or (shape is not None and part.shape != shape):
            return None
        shape = part.shape
        with np.errstate(over="ignore"):
            parts.append(part.astype(np.float64, copy=False).astype(np.float32))
    return np.stack(parts)


def release_nested(value: Any) -> None:
    """Empty a parsed JSON array one outer item at a time, so that freeing it lets other threads run.

    Freeing a nested list of millions of numbers at once is one C-level cascade that holds the GIL
    (about 0.2 s for 8 million numbers), stalling the event loop; item by item, the interpreter can
    switch threads between two items (one sample, or one row, each).
    """
    while isinstance(value, list) and value:
        del value[-1]


def _is_ragged(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    kinds = {isinstance(item, list) for item in value}
    if len(kinds) > 1:
        return True
    if kinds == {True}:
        return len({len(item) for item in value}) > 1 or any(_is_ragged(item) for item in value)
    return False


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """JSON bytes of a payload whose leaves may be numpy arrays (written as nested lists, exactly).

    With ``orjson`` installed (the ``serve`` extra), float32 arrays are written natively, each value
    as the shortest decimal that reads back as the same float32 (about 20x faster than the standard
    library for a 64x64 field); otherwise as float64 reprs, which are exact too.
    """
    if orjson is not None:
        return orjson.dumps(payload, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(payload, default=_json_default, allow_nan=False, separators=(",", ":")).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # non-contiguous or of a dtype orjson does not write
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def decode_json_request(
    body: bytes, max_variables: int, deadline: float = float("inf"), timeout_s: float | None = None
) -> tuple[dict[str, np.ndarray], int | None, int | None]:
    """The inputs of a JSON predict request as float32 arrays, with its ``steps`` and ``seed``.

    Parameters
    ----------
    body
        The request's bytes.
    max_variables
        Most keys of ``inputs``; more is refused with 413 ``too_many_variables``.
    deadline, timeout_s
        ``time.monotonic()`` past which decoding stops with 504 (:func:`check_deadline`), and the timeout it names.

    Returns
    -------
    arrays, steps, seed
        The input arrays by name (each nested list freed once converted), and the body's ``steps`` and ``seed``.
    """
    request = parse_json_request(body)
    if len(request.inputs) > max_variables:
        raise ServiceError(
            413, "too_many_variables",
            f"the JSON body holds {len(request.inputs)} inputs; the limit is {max_variables} (max_variables)",
        )
    booleans = b"true" in body or b"false" in body  # else no array needs searching for them
    arrays = {}
    for name in list(request.inputs):  # each nested list (about 30 bytes a number) is freed once converted
        check_deadline(deadline, timeout_s)
        nested = request.inputs.pop(name)
        try:
            arrays[name] = json_array(name, nested, booleans)
        finally:
            release_nested(nested)
    return arrays, request.steps, request.seed


def encode_json_answer(
    name: str, answer: dict[str, tuple[list[str], np.ndarray]], attrs: dict[str, dict[str, str]], steps: int | None,
    info: dict, started: float,
) -> bytes:
    """The JSON answer (``PredictResponse``) of model ``name``: its outputs, their dims, shapes and attributes,
    the rollout's ``steps``, the model's ``info`` and the milliseconds since ``started`` (``time.perf_counter()``)."""
    payload = {
        "model": name,
        "outputs": {var: np.ascontiguousarray(value) for var, (_, value) in answer.items()},
        "dims": {var: dims for var, (dims, _) in answer.items()},
        "shape": {var: list(value.shape) for var, (_, value) in answer.items()},
        "attrs": attrs,
        "steps": steps,
        "info": info,
        "elapsed_ms": 1000 * (time.perf_counter() - started),
    }
    return encode_json(payload)
