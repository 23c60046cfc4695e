"""Validation of an Anthropic Message Batch create body, streamed from disk.

The body (`{"requests": [{"custom_id", "params"}, ...]}`, up to 256 MB by default) is
stored as received and read with ijson, one request at a time, never whole. Two passes:

- `check_envelope`, at create: the shape, 1..max requests, every `custom_id` matching
  `^[a-zA-Z0-9_-]{1,64}$` and unique. A problem rejects the whole create with one 400
  naming the index (`requests.3.custom_id`), as Anthropic does.
- `iter_requests`, at ingest (in the worker): each request's `params` validated by the
  /v1/messages endpoint, the same check as a real-time body. An invalid `params` (or an
  unknown model) makes only that request `errored`; the rest run.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import ijson

from freight.config import LimitSettings
from freight.errors import InvalidRequest
from freight.protocol import endpoints
from freight.protocol.batch_input import AcceptedLine

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FIELDS = ("custom_id", "params")
_SHAPE = 'The body must be {"requests": [{"custom_id": ..., "params": {...}}, ...]}.'


def _items(fh: BinaryIO) -> Iterator[tuple[int, Any]]:
    """Yield (index, request) for each element of the body's `requests` array."""
    events = ijson.parse(fh, use_float=True)
    try:
        first = next(events, None)
        if first is None or first[1] != "start_map":
            raise InvalidRequest(f"The request body is not a JSON object. {_SHAPE}")
        has_requests = False
        for prefix, event, value in events:
            if prefix == "" and event == "end_map":
                break
            if event != "map_key":
                continue  # cannot happen at the top level of a map
            if value != "requests":
                raise InvalidRequest(
                    f"Unrecognized request argument supplied: {value}", param=value
                )
            if has_requests:
                raise InvalidRequest("'requests' is given twice.", param="requests")
            has_requests = True
            _, event, _ = next(events)
            if event != "start_array":
                raise InvalidRequest(f"'requests' must be a list. {_SHAPE}", param="requests")
            yield from _array_items(events)
        for _ in events:  # trailing content after the object is invalid JSON: ijson raises
            pass
    except ijson.JSONError as exc:
        reason = (str(exc).strip().splitlines() or ["unreadable"])[0]  # yajl adds ASCII art
        raise InvalidRequest(f"The request body is not valid JSON: {reason}.") from None
    except UnicodeDecodeError as exc:  # yajl decodes strings as it goes
        raise InvalidRequest(
            f"The request body is not valid UTF-8 JSON: {exc.reason} (byte "
            f"0x{exc.object[exc.start]:02x} in a string)."
        ) from None
    if not has_requests:
        raise InvalidRequest("Missing required parameter: 'requests'.", param="requests")


def _array_items(events: Iterator[tuple[str, str, Any]]) -> Iterator[tuple[int, Any]]:
    indexes = itertools.count()
    for _, event, value in events:
        if event == "end_array":
            return
        builder = ijson.ObjectBuilder()
        builder.event(event, value)
        depth = 1 if event in ("start_map", "start_array") else 0
        while depth:
            _, event, value = next(events)
            builder.event(event, value)
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
        yield next(indexes), builder.value


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
    if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
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
    for index, item in _items(fh):
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
) -> Iterator[AcceptedLine]:
    """Each request of an envelope-checked body, its `params` validated (line = index + 1).

    `check_model(model, url)` says why an existing model cannot serve /v1/messages (an
    embeddings model), if it cannot.
    """
    endpoint = endpoints.ENDPOINTS["/v1/messages"]
    for index, item in _items(fh):
        custom_id, params = _check_item(index, item)
        model = params.get("model")
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
