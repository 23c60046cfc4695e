"""The exception tree: every error Freight raises on purpose derives from FreightError.

Each subclass's docstring is its default message. The API layer renders these in the
wire shape of the API being spoken (OpenAI or Anthropic); the CLI prints them.
`error_type` is OpenAI's `type`; Anthropic's is derived from the status code.
"""

from __future__ import annotations


class FreightError(Exception):
    """Freight failed."""

    status_code = 500
    error_type = "server_error"

    def __init__(
        self, message: str | None = None, *, param: str | None = None, code: str | None = None
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.param = param
        self.code = code
        super().__init__(self.message)


class InvalidRequest(FreightError):
    """The request is invalid."""

    status_code = 400
    error_type = "invalid_request_error"


class NotFound(FreightError):
    """No such object."""

    status_code = 404
    error_type = "invalid_request_error"


class Unauthorized(FreightError):
    """Invalid or missing API key: send it as `Authorization: Bearer KEY` or `x-api-key: KEY`."""

    status_code = 401
    error_type = "invalid_request_error"


class QuotaExceeded(FreightError):
    """The project is over one of its quotas; retry after the time in Retry-After."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str | None = None, *, retry_after: float, **kwargs: str) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Conflict(FreightError):
    """The object is not in a state that allows this."""

    status_code = 409
    error_type = "invalid_request_error"


class PayloadTooLarge(FreightError):
    """The request body is too large."""

    status_code = 413
    error_type = "invalid_request_error"


class IllegalTransition(FreightError):
    """A batch or request status change that the lifecycle does not allow."""

    status_code = 409
    error_type = "invalid_request_error"


class StorageUnavailable(FreightError):
    """Storage is unavailable for now (disk full or database locked); try again shortly."""

    status_code = 503
    error_type = "server_error"


class ConfigError(FreightError):
    """The configuration is invalid."""


class EngineError(FreightError):
    """The inference engine failed."""


class EngineUnavailable(EngineError):
    """The inference engine is not running."""

    status_code = 503
    error_type = "server_error"
