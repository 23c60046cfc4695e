"""Per-request body errors, shared by every endpoint's translation.

A BodyError is what an endpoint raises for a request body it rejects: a 400 on the
real-time routes, one errored result in a batch. Each endpoint renders it in its own
API's error shape (`Endpoint.error_body` in protocol/endpoints.py).
"""

from __future__ import annotations

from typing import Any

from freight.protocol import openai as wire


class BodyError(Exception):
    """A request body the endpoint rejects: becomes a 400 (a per-line error in batches)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {message, type, param, code}}`."""
        detail = wire.ErrorDetail(
            message=self.message, type="invalid_request_error", param=self.param, code=self.code
        )
        return wire.ErrorBody(error=detail).model_dump()


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
