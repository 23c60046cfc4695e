"""Validation of an Anthropic Message Batch create body, streamed from disk.

The body (`{"requests": [{"custom_id", "params"}, ...]}`, up to 256 MB by default) is
stored as received and read with ijson, one request at a time, never whole. Two passes:

- `check_envelope`, at create: the shape, 1..max requests, every `custom_id` matching
  `^[a-zA-Z0-9_-]{1,64}$` (all of it: no trailing newline) and unique, and each request
  within the JSON budget (protocol/json_budget.py: nesting, lone surrogates). A problem
  rejects the whole create with one 400 naming the index (`requests.3.custom_id`), as
  Anthropic does.
- `iter_requests`, at ingest (in the worker): each request's `params` validated by the
  /v1/messages endpoint, the same check as a real-time body. An invalid `params` (or an
  unknown model) makes only that request `errored`; the rest run.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import ijson

from freight.config import LimitSettings
from freight.errors import InvalidRequest
from freight.protocol import endpoints, json_budget
from freight.protocol.batch_input import AcceptedLine, same_name, with_canonical_model

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # fullmatch: a trailing newline is refused
_FIELDS = ("custom_id", "params")
_SHAPE = 'The body must be {"requests": [{"custom_id": ..., "params": {...}}, ...]}.'
_OPENS = frozenset({"start_map", "start_array"})
_CLOSES = frozenset({"end_map", "end_array"})
_STEPS = {"start_map": 1, "start_array": 1, "end_map": -1, "end_array": -1}


class _Position:
    """Where the reader is in the body, for errors: a request, and a field within it."""

    def __init__(self) -> None:
        self.index: int | None = None
        self.field: str | None = None

    def where(self) -> str | None:
        if self.index is None:
            return None
        return f"requests.{self.index}" + (f".{self.field}" if self.field else "")


def _items(fh: BinaryIO, max_depth: int) -> Iterator[tuple[int, Any]]:
    """Yield (index, request) for each element of the body's `requests` array.

    Prefix-free events (`basic_parse`): `ijson.parse` builds a prefix string per event, as
    long as the nesting is deep, which makes a deep body quadratic in time and memory.
    """
    position = _Position()
    events = ijson.basic_parse(json_budget.SurrogatesExposed(fh), use_float=True)
    try:
        first = next(events, None)
        if first is None or first[0] != "start_map":
            raise InvalidRequest(f"The request body is not a JSON object. {_SHAPE}")
        has_requests = False
        for event, value in events:
            if event == "end_map":
                break
            # A map_key: the top level holds only `requests`, whose array is read whole.
            if value != "requests":
                raise InvalidRequest(
                    f"Unrecognized request argument supplied: {value}. {_SHAPE}", param=value
                )
            if has_requests:
                raise InvalidRequest("'requests' is given twice.", param="requests")
            has_requests = True
            event, _ = next(events)
            if event != "start_array":
                raise InvalidRequest(f"'requests' must be a list. {_SHAPE}", param="requests")
            yield from _array_items(events, max_depth, position)
        for _ in events:  # trailing content after the object is invalid JSON: ijson raises
            pass
    except ijson.JSONError as exc:
        raise _invalid_json(exc, position.where()) from None
    except UnicodeDecodeError as exc:  # yajl decodes each string as it goes
        raise _not_unicode(exc, position.where()) from None
    if not has_requests:
        raise InvalidRequest("Missing required parameter: 'requests'.", param="requests")


def _array_items(
    events: Iterator[tuple[str, Any]], max_depth: int, position: _Position
) -> Iterator[tuple[int, Any]]:
    for index in itertools.count():
        event, value = next(events)
        if event == "end_array":
            position.index = None
            return
        position.index, position.field = index, None
        yield index, _build(event, value, events, max_depth, position)


def _build(
    event: str,
    value: Any,
    events: Iterator[tuple[str, Any]],
    max_depth: int,
    position: _Position,
) -> Any:
    """One request, built from its first event on; its fields may nest `max_depth` deep.

    A request nested deeper is not built: its events are counted to its end (constant
    memory per level) and it is refused with its depth.
    """
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1 if event in _OPENS else 0
    while depth:
        event, value = next(events)
        if depth == 1 and event == "map_key":
            position.field = value
        if event in _OPENS:
            depth += 1
            if depth > max_depth + 1:  # + 1: the request object around its fields
                deepest = _deepest(events, depth)
                # A field (`params`) nests one level less than the request holding it.
                nests = deepest - 1 if position.field is not None else deepest
                raise InvalidRequest(
                    json_budget.too_deep(str(position.where()), nests, max_depth),
                    param=position.where(),
                )
        elif event in _CLOSES:
            depth -= 1
        builder.event(event, value)
    return builder.value


def _deepest(events: Iterator[tuple[str, Any]], depth: int) -> int:
    """Read the events of the value open at `depth` to its end; the deepest level seen.

    At C speed (no Python-level step per event): the running depth, taken while it is
    above 0, and its maximum.
    """
    steps = map(_STEPS.get, map(operator.itemgetter(0), events), itertools.repeat(0))
    levels = itertools.accumulate(steps, initial=depth)
    return max(itertools.takewhile(functools.partial(operator.lt, 0), levels))


def _invalid_json(exc: ijson.JSONError, where: str | None) -> InvalidRequest:
    # yajl's message is bytes for lexical errors, and its later lines draw the input.
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    reason = (text.strip().splitlines() or ["unreadable"])[0].strip().rstrip(".")
    if "UTF8" in reason:
        message = "is not valid UTF-8: a string holds bytes that are not UTF-8."
    elif "overflow" in reason:
        message = (
            f"holds a number out of range ({reason}): integers must fit in 64 bits "
            "and numbers be finite."
        )
    else:
        message = f"is not valid JSON: {reason}. {_SHAPE}"
    return InvalidRequest(f"{where or 'The request body'} {message}", param=where)


def _not_unicode(exc: UnicodeDecodeError, where: str | None) -> InvalidRequest:
    head = bytes(exc.object[exc.start : exc.start + 3])
    subject = where or "The request body"
    if len(head) == 3 and head[0] == 0xED and head[1] >= 0xA0:  # a surrogate, spelled raw
        surrogate = json_budget.lone_surrogate(head) or ""
        return InvalidRequest(json_budget.not_unicode(subject, surrogate), param=where)
    return InvalidRequest(
        f"{subject} is not valid UTF-8 (byte 0x{head[0]:02x} in a string).", param=where
    )


def _check_item(index: int, item: Any) -> tuple[str, dict[str, Any]]:
    where = f"requests.{index}"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where}: each request must be an object. {_SHAPE}", param=where)
    for name in _FIELDS:
        if name not in item:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.{name}'.", param=f"{where}.{name}"
            )
    extra = sorted(set(item) - set(_FIELDS))
    if extra:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {where}.{extra[0]}. "
            "Each request has only custom_id and params.",
            param=f"{where}.{extra[0]}",
        )
    custom_id, params = item["custom_id"], item["params"]
    if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
        raise InvalidRequest(
            f"{where}.custom_id: {json.dumps(custom_id)[:80]} is invalid: a custom_id is 1 to "
            "64 letters, digits, '_' or '-' (^[a-zA-Z0-9_-]{1,64}$).",
            param=f"{where}.custom_id",
        )
    if not isinstance(params, dict):
        raise InvalidRequest(
            f"{where}.params: must be an object (the Messages create parameters).",
            param=f"{where}.params",
        )
    return custom_id, params


def check_envelope(fh: BinaryIO, limits: LimitSettings) -> int:
    """Check the create body's shape and custom_ids; return the number of requests."""
    first_index: dict[str, int] = {}
    num = 0
    for index, item in _items(fh, limits.max_json_depth):
        if index >= limits.max_message_batch_requests:
            raise InvalidRequest(
                f"requests: the batch has more than {limits.max_message_batch_requests} "
                "requests, the most one batch may hold. Split it into several batches.",
                param="requests",
            )
        custom_id, _ = _check_item(index, item)
        earlier = first_index.setdefault(custom_id, index)
        if earlier != index:
            raise InvalidRequest(
                f"requests.{index}.custom_id: '{custom_id}' is already used by "
                f"requests.{earlier}; custom_id values must be unique within a batch.",
                param=f"requests.{index}.custom_id",
            )
        num += 1
    if num == 0:
        raise InvalidRequest("requests: must hold at least one request.", param="requests")
    return num


def iter_requests(
    fh: BinaryIO,
    *,
    has_model: Callable[[str], bool],
    check_model: Callable[[str, str], str | None] = lambda model, url: None,
    canonical_model: Callable[[str], str] = same_name,
    max_depth: int = json_budget.MAX_CONFIGURABLE_DEPTH,
) -> Iterator[AcceptedLine]:
    """Each request of an envelope-checked body, its `params` validated (line = index + 1).

    `check_model(model, url)` says why an existing model cannot serve /v1/messages (an
    embeddings model), if it cannot; `canonical_model` gives an alias's model its own
    name (engines/registry.py). `check_envelope` held the body to `[limits]
    max_json_depth` when it was created; `max_depth` (by default the most that setting
    may be) only keeps this read bounded.
    """
    endpoint = endpoints.ENDPOINTS["/v1/messages"]
    for index, item in _items(fh, max_depth):
        custom_id, params = _check_item(index, item)
        model = params.get("model")
        if isinstance(model, str):
            params, model = with_canonical_model(params, model, canonical_model)
        error: dict[str, Any] | None = None
        status = 400
        try:
            endpoints.parse_body(endpoint, params, in_batch=True)
        except endpoints.BodyError as exc:
            error = endpoint.error_body(exc, status)
        if error is None and not has_model(str(model)):  # parsed: model is a str
            status = 404
            problem = endpoints.BodyError(
                f"model: '{model}' does not exist. GET /v1/models lists the available models.",
                param="model",
            )
            error = endpoint.error_body(problem, status)
        elif error is None and (why := check_model(str(model), endpoint.url)) is not None:
            problem = endpoints.BodyError(why, param="model", code="model_not_supported")
            error = endpoint.error_body(problem, status)
        yield AcceptedLine(
            line=index + 1,
            custom_id=custom_id,
            url=endpoint.url,
            body=params,
            body_json=json.dumps(params, separators=(",", ":"), ensure_ascii=False),
            model=model if isinstance(model, str) else None,
            error_body=error,
            error_status=status,
        )
