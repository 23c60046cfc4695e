"""The statuses a batch and a request can be in, as stored and as the OpenAI API shows them.

Both are `StrEnum`s: a member is equal to its string, so the database holds and the wire
carries the same values as before, while the code names each status once. Which status
may follow which is the store's business (`batches.ALLOWED`; the request lifecycle in
store/batch_requests.py); the Anthropic view derives its own names from these
(protocol/views.py).
"""

from __future__ import annotations

import json
from enum import StrEnum


class BatchStatus(StrEnum):
    """A batch's lifecycle: OpenAI's batch statuses, which both APIs' batches share."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class RequestStatus(StrEnum):
    """One request (input line) of a batch, as the worker moves it through the queue."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The error a request records when its batch ends before it ran (cancelled or expired).
CANCELLED_ERROR = json.dumps(
    {
        "code": "batch_cancelled",
        "message": "This request was not executed because the batch was cancelled.",
    }
)
EXPIRED_ERROR = json.dumps(
    {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }
)
