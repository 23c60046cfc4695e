"""The exception tree: every error Freight raises toward a user derives from FreightError.

Each class says, in one place, how it reaches a user: `status_code` (its HTTP status),
`openai_type` and `anthropic_type` (the error `type` in each API's error body) and
`line_code` (the `code` of the `{code, message}` error Freight records when this error
ends a batch request or a batch without a response, e.g. a Message Batch's `errors`).
Each instance adds `message` (by default the class's docstring), `param` (the field at
fault) and `code` (OpenAI's error `code`, such as `model_not_supported`).

The API error handler (api/errors.py) and the worker's line writer (worker/runner.py)
read these attributes; nothing else maps exception classes to statuses or types. The
exceptions of other layers live with them and derive from these: `RequestRejected` and
`EngineDied` (engines/base.py), `BodyError` (protocol/body_errors.py).
"""

from __future__ import annotations

from typing import ClassVar


class FreightError(Exception):
    """Freight failed."""

    status_code: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    anthropic_type: ClassVar[str] = "api_error"
    line_code: ClassVar[str] = "server_error"
    # What an API caller can do about it, appended to the message of an API response
    # (a batch request is retried by the worker, so its error line does not say it).
    advice: ClassVar[str | None] = None

    def __init__(
        self, message: str | None = None, *, param: str | None = None, code: str | None = None
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.param = param
        self.code = code
        super().__init__(self.message)

    @property
    def api_message(self) -> str:
        """The message of an API response: the message, then the advice if there is one."""
        return f"{self.message}. {self.advice}" if self.advice else self.message

    @property
    def line_status(self) -> int:
        """The status_code of a batch request's error line: the HTTP status, unless the
        error knows a truer one (an upstream server's own 4xx, in RequestRejected)."""
        return self.status_code


class InvalidRequest(FreightError):
    """The request is invalid."""

    status_code = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    line_code = "invalid_request"


class NotFound(FreightError):
    """No such object."""

    status_code = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    line_code = "not_found"


class Unauthorized(FreightError):
    """Invalid or missing API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`."""

    status_code = 401
    openai_type = "invalid_request_error"
    anthropic_type = "authentication_error"
    line_code = "unauthorized"


class QuotaExceeded(FreightError):
    """The project is over one of its quotas; retry after the time in Retry-After."""

    status_code = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    line_code = "quota_exceeded"

    def __init__(self, message: str | None = None, *, retry_after: float, **kwargs: str) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class FlexUnavailable(FreightError):
    """No flex capacity is free; retry after the time in Retry-After."""

    status_code = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    line_code = "flex_unavailable"

    def __init__(self, message: str | None = None, *, retry_after: float, **kwargs: str) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Conflict(FreightError):
    """The object is not in a state that allows this."""

    status_code = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    line_code = "conflict"


class PayloadTooLarge(FreightError):
    """The request body is too large."""

    status_code = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    line_code = "too_large"


class IllegalTransition(FreightError):
    """A batch or request status change that the lifecycle does not allow."""

    status_code = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    line_code = "illegal_transition"


class StorageUnavailable(FreightError):
    """Storage is unavailable for now (disk full or database locked); try again shortly."""

    status_code = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    line_code = "storage_unavailable"


class ConfigError(FreightError):
    """The configuration is invalid."""

    line_code = "config_error"


class EngineError(FreightError):
    """The inference engine failed."""

    line_code = "engine_error"


class EngineUnavailable(EngineError):
    """The inference engine is not running."""

    status_code = 503
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
