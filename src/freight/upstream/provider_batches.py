"""Clients for providers' Batch APIs: OpenAI-style (files + batches), Anthropic-style
(message batches). Each submits requests, reports the batch's state, cancels it, and
turns its results into Outcomes for Freight's own store.

Requests go upstream with Freight's request id as their custom_id (unique, and within
both providers' custom_id rules) and the upstream's model name; results come back
keyed by it, so the caller's custom_id never leaves Freight. Upstream failures map onto
Freight's own line statuses: a request the provider expired is `expired`, one it
cancelled is `cancelled` (with Freight's own batch_expired / batch_cancelled errors), a
failed request is `errored` with the provider's status and body, and a request the
provider returned nothing for is `errored` with the reason the provider gave.

Transport failures, 429 and 5xx raise `UpstreamUnavailable` (the runner retries later);
any other error response raises `UpstreamRefused`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from freight.config import AnthropicBatchUpstream, BatchUpstream, OpenAIBatchUpstream
from freight.engines.http_engine import error_message, is_transient, open_client
from freight.errors import FreightError
from freight.store import batches
from freight.store.batch_requests import ClaimedRequest, Outcome
from freight.store.statuses import CANCELLED_ERROR, EXPIRED_ERROR, BatchStatus, RequestStatus

OPENAI_MAX_REQUESTS = 50_000
ANTHROPIC_MAX_REQUESTS = 100_000
OPENAI_URLS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
ANTHROPIC_URLS = ("/v1/messages",)


class UpstreamUnavailable(FreightError):
    """The upstream Batch API could not be reached or is overloaded; try again later."""


class UpstreamRefused(FreightError):
    """The upstream Batch API refused the call."""


@dataclass(frozen=True)
class UpstreamState:
    """What the provider says of a batch."""

    status: str  # the provider's own word
    is_ended: bool
    detail: str | None = None


class ProviderBatches(Protocol):
    max_requests: int

    async def submit(self, name: str, requests: list[ClaimedRequest]) -> tuple[str, str]:
        """Create the upstream batch; its id and status."""
        ...

    async def state(self, upstream_id: str) -> UpstreamState: ...

    async def cancel(self, upstream_id: str) -> None: ...

    async def results(
        self, upstream_id: str, state: UpstreamState, requests: list[ClaimedRequest]
    ) -> list[Outcome]:
        """One Outcome for every request of the batch, once it has ended."""
        ...

    async def close(self) -> None: ...


def max_requests(upstream: BatchUpstream) -> int:
    """Requests per upstream batch: the configured limit, else the provider's own."""
    is_anthropic = isinstance(upstream, AnthropicBatchUpstream)
    default = ANTHROPIC_MAX_REQUESTS if is_anthropic else OPENAI_MAX_REQUESTS
    return upstream.max_requests_per_batch or default


def urls_for(style: str) -> tuple[str, ...]:
    return ANTHROPIC_URLS if style == "anthropic" else OPENAI_URLS


def client_for(upstream: BatchUpstream, model: str, *, transport: Any = None) -> ProviderBatches:
    """The client of the provider's Batch API that `upstream` configures."""
    if isinstance(upstream, AnthropicBatchUpstream):
        return AnthropicBatches(upstream, model, transport=transport)
    return OpenAIBatches(upstream, model, transport=transport)


def _checked(response: httpx.Response, what: str) -> Any:
    if response.status_code < 400:
        return response.json() if response.content else None
    message = f"{what}: HTTP {response.status_code}: {error_message(response)}"
    if is_transient(response.status_code):
        raise UpstreamUnavailable(message)
    raise UpstreamRefused(message)


def _body_for_upstream(request: ClaimedRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.body)
    body["model"] = model
    return body


def _succeeded(request: ClaimedRequest, body: Any) -> Outcome:
    """A 200 result, with the token counts of its OpenAI (chat, completions, responses,
    embeddings) or Anthropic usage object."""
    usage = body.get("usage") if isinstance(body, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = details.get("cached_tokens") or usage.get("cache_read_input_tokens") or 0
    return Outcome(
        request.id,
        request.batch_id,
        RequestStatus.SUCCEEDED,
        status_code=200,
        response_json=_compact(body),
        input_tokens=int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
        cached_tokens=int(cached),
        output_tokens=int(usage.get("completion_tokens") or usage.get("output_tokens") or 0),
    )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _missing(request: ClaimedRequest, state: UpstreamState) -> Outcome:
    """The outcome of a request the provider returned no result for."""
    if state.status == BatchStatus.EXPIRED:
        return Outcome(
            request.id, request.batch_id, RequestStatus.EXPIRED, error_json=EXPIRED_ERROR
        )
    if state.status in (BatchStatus.CANCELLED, "canceled"):
        return Outcome(
            request.id,
            request.batch_id,
            RequestStatus.CANCELLED,
            error_json=CANCELLED_ERROR,
        )
    reason = state.detail or f"the upstream batch ended '{state.status}' without a result for it"
    error = {"code": "upstream_batch_failed", "message": reason}
    return Outcome(request.id, request.batch_id, RequestStatus.ERRORED, error_json=_compact(error))


def with_missing(
    requests: list[ClaimedRequest], found: dict[str, Outcome], state: UpstreamState
) -> list[Outcome]:
    """One Outcome per request: the provider's result, or what its absence means."""
    return [found.get(r.id) or _missing(r, state) for r in requests]


class _ProviderBatches:
    """What both providers' clients share: settings, the HTTP client, checked calls."""

    def __init__(self, upstream: BatchUpstream, model: str, *, transport: Any = None) -> None:
        self.model = model
        self.max_requests = max_requests(upstream)
        self.client = open_client(upstream, transport=transport)

    async def close(self) -> None:
        await self.client.aclose()

    async def _call(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"{what}: {exc!r}") from exc
        return _checked(response, what)


class OpenAIBatches(_ProviderBatches):
    """OpenAI's Batch API: upload a JSONL file, create a batch, read its output files."""

    def __init__(self, upstream: OpenAIBatchUpstream, model: str, *, transport: Any = None) -> None:
        super().__init__(upstream, model, transport=transport)
        self.completion_window = upstream.completion_window

    async def submit(self, name: str, requests: list[ClaimedRequest]) -> tuple[str, str]:
        endpoint = requests[0].url
        lines = b"".join(
            _compact(
                {
                    "custom_id": r.id,
                    "method": "POST",
                    "url": r.url,
                    "body": _body_for_upstream(r, self.model),
                }
            ).encode()
            + b"\n"
            for r in requests
        )
        uploaded = await self._call(
            "POST",
            "files",
            "upload the batch input",
            files={"file": (f"{name}.jsonl", lines, "application/jsonl")},
            data={"purpose": "batch"},
        )
        created = await self._call(
            "POST",
            "batches",
            "create the batch",
            json={
                "input_file_id": uploaded["id"],
                "endpoint": endpoint,
                "completion_window": self.completion_window,
                "metadata": {"freight_upstream_batch": name},
            },
        )
        return str(created["id"]), str(created.get("status", BatchStatus.VALIDATING))

    async def state(self, upstream_id: str) -> UpstreamState:
        batch = await self._call("GET", f"batches/{upstream_id}", "poll the batch")
        status = str(batch.get("status"))
        errors = (batch.get("errors") or {}).get("data") or []
        detail = "; ".join(str(e.get("message")) for e in errors) or None
        ended = status in batches.TERMINAL  # OpenAI's statuses are Freight's own
        return UpstreamState(status, ended, detail)

    async def cancel(self, upstream_id: str) -> None:
        await self._call("POST", f"batches/{upstream_id}/cancel", "cancel the batch")

    async def results(
        self, upstream_id: str, state: UpstreamState, requests: list[ClaimedRequest]
    ) -> list[Outcome]:
        batch = await self._call("GET", f"batches/{upstream_id}", "read the batch")
        by_id = {r.id: r for r in requests}
        found: dict[str, Outcome] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if not file_id:
                continue
            try:
                response = await self.client.get(f"files/{file_id}/content")
            except httpx.HTTPError as exc:
                raise UpstreamUnavailable(f"download the results: {exc!r}") from exc
            if response.status_code >= 400:
                _checked(response, "download the results")
            for raw in response.text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                request = by_id.get(str(line.get("custom_id")))
                if request is not None:
                    found[request.id] = openai_outcome(request, line)
        return with_missing(requests, found, state)


class AnthropicBatches(_ProviderBatches):
    """Anthropic's Message Batches API: one create call, results as JSONL."""

    async def submit(self, name: str, requests: list[ClaimedRequest]) -> tuple[str, str]:
        body = {
            "requests": [
                {"custom_id": r.id, "params": _body_for_upstream(r, self.model)} for r in requests
            ]
        }
        created = await self._call("POST", "v1/messages/batches", "create the batch", json=body)
        return str(created["id"]), str(created.get("processing_status", "in_progress"))

    async def state(self, upstream_id: str) -> UpstreamState:
        batch = await self._call("GET", f"v1/messages/batches/{upstream_id}", "poll the batch")
        status = str(batch.get("processing_status"))
        return UpstreamState(status, status == "ended")

    async def cancel(self, upstream_id: str) -> None:
        await self._call("POST", f"v1/messages/batches/{upstream_id}/cancel", "cancel the batch")

    async def results(
        self, upstream_id: str, state: UpstreamState, requests: list[ClaimedRequest]
    ) -> list[Outcome]:
        batch = await self._call("GET", f"v1/messages/batches/{upstream_id}", "read the batch")
        url = batch.get("results_url") or f"v1/messages/batches/{upstream_id}/results"
        try:
            response = await self.client.get(url)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"download the results: {exc!r}") from exc
        if response.status_code >= 400:
            _checked(response, "download the results")
        by_id = {r.id: r for r in requests}
        found: dict[str, Outcome] = {}
        for raw in response.text.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            request = by_id.get(str(line.get("custom_id")))
            if request is not None:
                found[request.id] = anthropic_outcome(request, line.get("result") or {})
        ended = UpstreamState("ended", True, "the upstream batch returned no result for it")
        return with_missing(requests, found, ended)


def openai_outcome(request: ClaimedRequest, line: dict[str, Any]) -> Outcome:
    """One line of an OpenAI batch's output or error file as an Outcome."""
    response = line.get("response")
    if response is not None:
        status_code = int(response.get("status_code") or 0)
        body = response.get("body")
        if status_code == 200:
            return _succeeded(request, body)
        return Outcome(
            request.id,
            request.batch_id,
            RequestStatus.ERRORED,
            status_code=status_code,
            response_json=_compact(body),
        )
    error = line.get("error") or {"code": "unknown", "message": "no result"}
    if error.get("code") == "batch_expired":
        return Outcome(
            request.id, request.batch_id, RequestStatus.EXPIRED, error_json=EXPIRED_ERROR
        )
    if error.get("code") == "batch_cancelled":
        return Outcome(
            request.id,
            request.batch_id,
            RequestStatus.CANCELLED,
            error_json=CANCELLED_ERROR,
        )
    return Outcome(request.id, request.batch_id, RequestStatus.ERRORED, error_json=_compact(error))


def anthropic_outcome(request: ClaimedRequest, result: dict[str, Any]) -> Outcome:
    """One Anthropic `result` (succeeded, errored, canceled, expired) as an Outcome."""
    kind = result.get("type")
    if kind == "succeeded":
        return _succeeded(request, result.get("message"))
    if kind == "expired":
        return Outcome(
            request.id, request.batch_id, RequestStatus.EXPIRED, error_json=EXPIRED_ERROR
        )
    if kind == "canceled":
        return Outcome(
            request.id,
            request.batch_id,
            RequestStatus.CANCELLED,
            error_json=CANCELLED_ERROR,
        )
    error = result.get("error") or {
        "type": "error",
        "error": {"type": "api_error", "message": "no result"},
    }
    error.pop("request_id", None)  # Freight sets its own when it writes the line
    inner = error.get("error") or {}
    status = 400 if inner.get("type") == "invalid_request_error" else 500
    return Outcome(
        request.id,
        request.batch_id,
        RequestStatus.ERRORED,
        status_code=status,
        response_json=_compact(error),
    )
