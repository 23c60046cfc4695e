"""Error responses in the wire shape of the API being spoken, for every failure path.

OpenAI routes answer `{"error": {message, type, param, code}}`; Anthropic routes
(`/v1/messages...`) answer `{"type": "error", "error": {type, message}, "request_id"}`.
Unknown routes, bad JSON and validation failures use the same shapes: a client never
sees FastAPI's default `{"detail": ...}`, and never a 500 for bad input.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from freight import ids
from freight.errors import FlexUnavailable, FreightError, QuotaExceeded
from freight.protocol import anthropic_wire, body_errors, request_model
from freight.store import faults

log = logging.getLogger(__name__)
# FastAPI's 400 for a body whose reading raised (json.loads other than on a syntax error,
# or a middleware's `receive` refusing it); the exception it chains says why.
FASTAPI_UNPARSEABLE_BODY = "There was an error parsing the body"


def is_anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def error_body(
    path: str,
    status: int,
    message: str,
    *,
    param: str | None = None,
) -> dict[str, Any]:
    """The error body for `path`'s API (also the `error` event of a broken stream), its
    type the one for `status` (a FreightError's response is `freight_error_response`)."""
    if is_anthropic_path(path):
        return anthropic_wire.error_body(status, message, ids.new_id("req_"))
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(request.url.path, status, message, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def freight_error_response(request: Request, exc: FreightError) -> JSONResponse:
    """`exc` as the response to `request`, from the exception's own attributes: its
    status, its type in the path's API, its message (and advice), param and code."""
    message = exc.api_message
    if is_anthropic_path(request.url.path):
        body = anthropic_wire.error_body(
            exc.status_code, message, ids.new_id("req_"), error_type=exc.anthropic_type
        )
    else:
        body = {
            "error": {
                "message": message,
                "type": exc.openai_type,
                "param": exc.param,
                "code": exc.code,
            }
        }
    # Both SDKs retry a 409 by default (a lock timeout upstream); ours are state
    # conflicts that a retry cannot resolve.
    headers = {"x-should-retry": "false"} if exc.status_code == 409 else None
    if isinstance(exc, QuotaExceeded | FlexUnavailable):
        headers = {"retry-after": str(math.ceil(exc.retry_after))}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


_NOT_AN_OBJECT = "The request body must be a JSON object of the endpoint's parameters, not "


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    where = err.get("loc", ())
    if err.get("type") == request_model.UNKNOWN_FIELD:  # raised by the object, about a field
        where = (*where, (err.get("ctx") or {}).get("field", ""))
    loc = [str(p) for p in where if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "unreadable")
        position = where[-1] if where and isinstance(where[-1], int) else None
        at = f" at character {position}" if position is not None else ""
        return f"The request body is not valid JSON: {reason}{at}.", None
    if param is None and where[:1] == ("body",):  # the body itself, not a field of it
        if err.get("type") == "missing":
            return (
                "The request body is missing (empty or null); send a JSON object of the "
                "endpoint's parameters.",
                None,
            )
        if isinstance(exc.body, bytes):  # FastAPI decodes only JSON content types
            return "The request body must be JSON (content-type: application/json).", None
        return f"{_NOT_AN_OBJECT}{body_errors.json_type(exc.body)}.", None
    if err.get("type") in ("extra_forbidden", request_model.UNKNOWN_FIELD):
        return f"Unrecognized request argument supplied: {param}", param
    if err.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param
    if param is None:
        return f"Invalid request: {err.get('msg')}.", None
    return f"Invalid value for '{param}': {err.get('msg')}.", param


def _unparseable_body(cause: BaseException | None) -> str:
    """Why FastAPI could not decode a JSON body (it says only that it could not)."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"The request body is not valid UTF-8 (byte 0x{cause.object[cause.start]:02x} at "
            f"byte {cause.start}). Send JSON encoded as UTF-8."
        )
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return (
            f"The request body holds an integer of more than {sys.get_int_max_str_digits()} "
            "digits, larger than any parameter accepts."
        )
    return "The request body could not be read as JSON."


def install(app: FastAPI) -> None:
    @app.exception_handler(FreightError)
    async def on_freight_error(request: Request, exc: FreightError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.api_message)
        return freight_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(request, 400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 400 and exc.detail == FASTAPI_UNPARSEABLE_BODY:
            if isinstance(exc.__cause__, FreightError):  # refused as it arrived (json_bodies)
                return freight_error_response(request, exc.__cause__)
            message = _unparseable_body(exc.__cause__)
        else:
            message = str(exc.detail)
        return error_response(request, exc.status_code, message, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if faults.is_storage_fault(exc):  # disk full, database locked: passes, so a 503
            reason = faults.describe(exc)
            log.error("%s %s: %s", request.method, request.url.path, reason)
            return error_response(
                request, 503, f"Storage is unavailable for now: {reason}. Try again shortly."
            )
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "The server had an internal error.")
