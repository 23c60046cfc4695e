"""Per-request body errors, shared by every endpoint's translation.

A BodyError is what an endpoint raises for a request body it rejects: a 400 on the
real-time routes, one errored result in a batch. Each endpoint renders an error in its
own API's shape (`Endpoint.error_body` in protocol/endpoints.py); `openai_body` is the
OpenAI one.
"""

from __future__ import annotations

from typing import Any

from freight.errors import FreightError, InvalidRequest
from freight.protocol import openai_wire


class BodyError(InvalidRequest):
    """A request body the endpoint rejects: becomes a 400 (a per-line error in batches)."""

    def body(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {message, type, param, code}}`."""
        return openai_body(self)


def openai_body(error: FreightError) -> dict[str, Any]:
    """`error` as an OpenAI error body: `{"error": {message, type, param, code}}`."""
    detail = openai_wire.ErrorDetail(
        message=error.message, type=error.openai_type, param=error.param, code=error.code
    )
    return openai_wire.ErrorBody(error=detail).model_dump()


def json_type(value: Any) -> str:
    """What a decoded JSON value is, as a message names it: "a string", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list | tuple) else "an object"
