"""Estimates: what a batch file will take on this deployment, before anything runs.

`estimate` validates the lines with the validator that creating the batch uses (the
worker's ingest: the same codes, messages and line numbers, raised as InvalidInput), and
counts, without running anything:

- the requests (and the lines that would become error lines without running);
- prompt tokens, with each model's own tokenizer as its engine builds the prompt
  (service/token_counts.py says how per engine, and whether exactly);
- the output-token ceiling: each request's `max_tokens` (or `max_completion_tokens`,
  `max_output_tokens`) times `n`; for a request without one, the model's context length
  minus its prompt, which is what the engine allows it;
- the expected output tokens: this deployment's mean per succeeded request of the same
  model and endpoint, capped by each request's ceiling, with the number of past requests
  it rests on; the ceiling when there is no history (usage/forecast.py);
- the expected duration at the model's measured batch throughput, with the open work of
  the batches ahead of it in the queue;
- the cost at the configured prices (usage/pricing.py): as batch work, at real-time
  prices, and the saving.

Per-line counting is service/request_counts.py; a batch's `expected_completion_at` is
service/completion.py's. `cache_hits` is how many of the requests the result cache
would answer now (store/result_cache.py): each line's cache key for the project the batch
would belong to, looked up in one bulk query, exactly as a worker's claim would find them
(only the cache's `ttl` may run out in between). The other figures count every request,
cached or not: the duration and cost are those of running the whole file.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from freight.config import Settings
from freight.engines import weights
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.errors import InvalidRequest, NotFound
from freight.protocol import batch_input, cache_keys, endpoints
from freight.protocol.batch_input import FileValidator, TooLong, iter_lines
from freight.protocol.openai_wire import BatchError
from freight.service import completion, request_counts, token_counts
from freight.service.runtime import Service
from freight.store import batches, files, result_cache, usage
from freight.store.blob_store import BlobStorage
from freight.store.db import Database
from freight.upstream import passthrough
from freight.usage import forecast, pricing

# A batch estimated before it exists joins the queue with the API's usual window.
DEFAULT_WINDOW_SECONDS = 86400  # 24h
Lines = Iterable[tuple[int, bytes | TooLong]]


class InvalidInput(InvalidRequest):
    """The input is invalid: creating a batch from it would fail validation."""

    def __init__(self, problems: list[BatchError]) -> None:
        first = problems[0]
        where = f"line {first.line}: " if first.line is not None else ""
        more = len(problems) - 1
        rest = f" (and {more} more problem{'s' if more > 1 else ''}; `errors` lists all)"
        super().__init__(
            f"The input file is invalid, as creating a batch from it would find: {where}"
            f"{first.message}{rest if more else ''}",
            param="input_file_id",
            code=first.code,
        )
        self.problems = problems


# --- the estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTokens:
    total: int
    method: str  # tokenizer, whitespace or characters (service/token_counts.py)
    is_exact: bool
    note: str


@dataclass(frozen=True)
class OutputTokens:
    ceiling: int | None  # None: a request has no max_tokens and the context is unknown
    num_requests_without_max_tokens: int  # their ceiling is the context left by the prompt
    context_length: int | None
    context_length_source: str | None
    expected: int | None
    expected_basis: Literal["history", "ceiling", "none"]
    mean_per_past_request: float | None
    num_past_requests: int
    note: str


@dataclass(frozen=True)
class Duration:
    expected_seconds: float | None  # queued ahead + this batch; None without a measured rate
    seconds_for_this_batch: float | None
    seconds_queued_ahead: float | None
    num_requests_queued_ahead: int
    tokens_queued_ahead: int
    tokens_per_second: float | None
    expected_completion_at: int | None
    basis: str


@dataclass(frozen=True)
class CostEstimate:
    currency: str
    batch: Decimal | None  # at the expected output tokens
    realtime: Decimal | None
    savings: Decimal | None
    batch_at_ceiling: Decimal | None
    batch_discount: Decimal
    note: str


@dataclass(frozen=True)
class Estimate:
    endpoint: str
    model: str | None
    num_requests: int  # lines that would run
    num_invalid_requests: int  # lines that would become error lines without running
    num_requests_over_context: int  # of those, refused for the model's context length
    prompt_tokens: PromptTokens
    output_tokens: OutputTokens
    cache_hits: int | None  # None: the result cache is off for this batch or deployment
    cache_note: str
    duration: Duration
    cost: CostEstimate
    created_at: int
    object: str = "batch.estimate"


def to_json_dict(estimate: Estimate) -> dict[str, Any]:
    """The estimate as JSON values (money as numbers of dollars)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)
        if isinstance(value, float):
            return round(value, 3)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {"object": estimate.object, **plain(dataclasses.asdict(estimate))}


def estimate(
    settings: Settings,
    registry: Registry,
    db: Database,
    sources: Iterable[Lines],
    endpoint_url: str,
    *,
    engines: EnginePool | None = None,
    place: completion.QueuePlace | None = None,
    now: float | None = None,
    project: str = files.DEFAULT_PROJECT,
    use_cache: bool = True,
) -> Estimate:
    """Estimate the lines of `sources` (each validated as one batch file; a table's chunks
    are several) sent to `endpoint_url` by `project`. InvalidInput if a batch would fail
    validation. `use_cache`: false for a batch created with `cache: false`."""
    now = time.time() if now is None else now
    is_cached = use_cache and settings.cache.enabled
    key_of = cache_keys.key_of(project, weights.weights_of(registry)) if is_cached else None
    keys: list[str | None] = []
    endpoint = endpoints.get(endpoint_url)
    check_model = functools.partial(passthrough.serving_problem, registry, in_batch=True)
    counting: request_counts.RequestCounts | None = None
    num_unrunnable = 0  # lines with a bad body before any model was known
    for lines in sources:
        validator = FileValidator(
            endpoint_url,
            settings.limits,
            has_model=registry.has,
            check_model=check_model,
            canonical_model=registry.canonical,  # as the ingest does: the keys match its keys
        )
        for line_no, raw in lines:
            accepted = validator.feed(line_no, raw)
            if validator.is_truncated:
                break
            if accepted is None or validator.is_failed:
                continue
            if accepted.error_body is not None or accepted.model is None:
                num_unrunnable += 1
                continue
            if counting is None:
                counting = _counting(settings, registry, db, endpoint, accepted.model, engines)
            counting.add(accepted.body)
            if key_of is not None:
                keys.append(key_of(accepted))
        problems = validator.finish()
        if problems:
            raise InvalidInput(problems)
    if place is None:
        place = completion.QueuePlace(int(now) + DEFAULT_WINDOW_SECONDS, time.time_ns())
    cache = _cache_hits(settings, db, keys, now) if is_cached else None
    return _assemble(settings, db, endpoint, counting, num_unrunnable, place, now, cache)


def _cache_hits(settings: Settings, db: Database, keys: list[str | None], now: float) -> int:
    with db.read() as conn:
        return result_cache.count_hits(conn, keys, now - settings.cache.ttl_seconds)


def _counting(
    settings: Settings,
    registry: Registry,
    db: Database,
    endpoint: endpoints.AnyEndpoint,
    model: str,
    engines: EnginePool | None,
) -> request_counts.RequestCounts:
    """The counts of `model`'s lines, with its tokenizer and its history here."""
    counter = token_counts.counter_for(settings, registry, model, engines=engines)
    with db.read() as conn:
        history = usage.request_history(conn, model, endpoint.url)
    per_request = forecast.per_request(history, endpoint.task)
    return request_counts.RequestCounts(endpoint, model, counter, per_request)


def _assemble(
    settings: Settings,
    db: Database,
    endpoint: endpoints.AnyEndpoint,
    counting: request_counts.RequestCounts | None,
    num_unrunnable: int,
    place: completion.QueuePlace,
    now: float,
    cache_hits: int | None,
) -> Estimate:
    tally = counting.tally if counting is not None else request_counts.Tally()
    model = counting.model if counting is not None else None
    task = endpoint.task
    history = counting.history if counting is not None else forecast.PerRequest(None, 0)
    counter = counting.counter if counting is not None else None
    expected = None if tally.expected is None else round(tally.expected)
    if task == "embed":
        basis: Literal["history", "ceiling", "none"] = "ceiling"
        output_note = "embeddings generate no tokens"
    elif expected is None:
        basis = "none"
        output_note = "unknown: no history, and a request has no known ceiling"
    elif history.mean_tokens is not None:
        basis = "history"
        output_note = (
            f"{history.mean_tokens:,.1f} output tokens per succeeded request of {model} at "
            f"{endpoint.url} on this deployment ({history.num_past_requests:,} requests), "
            "capped by each request's ceiling"
        )
    else:
        basis = "ceiling"
        output_note = f"no history of {model} at {endpoint.url} yet: the ceiling"
    output = OutputTokens(
        ceiling=tally.ceiling,
        num_requests_without_max_tokens=tally.num_without_max_tokens,
        context_length=counter.context.num_tokens if counter else None,
        context_length_source=counter.context.source if counter else None,
        expected=expected,
        expected_basis=basis,
        mean_per_past_request=history.mean_tokens,
        num_past_requests=history.num_past_requests,
        note=output_note,
    )
    work = tally.prompt_tokens if task == "embed" else expected
    duration = _duration(db, endpoint, model, work, place, now)
    prices = pricing.PriceBook(settings)
    cost = prices.cost(model, tally.prompt_tokens, expected) if expected is not None else None
    at_ceiling = (
        prices.cost(model, tally.prompt_tokens, tally.ceiling)
        if tally.ceiling is not None
        else None
    )
    priced = prices.prices(model) is not None
    return Estimate(
        endpoint=endpoint.url,
        model=model,
        num_requests=tally.num_requests,
        num_invalid_requests=tally.num_invalid + num_unrunnable,
        num_requests_over_context=tally.num_over_context,
        prompt_tokens=PromptTokens(
            total=tally.prompt_tokens,
            method=counter.method if counter else "none",
            is_exact=counter.is_exact if counter else True,
            note=counter.note if counter else "no request to count",
        ),
        output_tokens=output,
        cache_hits=cache_hits,
        cache_note=(
            "requests the result cache would answer now: deterministic requests this project "
            f"ran on the same model weights within the last {settings.cache.ttl_seconds:,} s"
            if cache_hits is not None
            else "the result cache is off for this batch or deployment"
        ),
        duration=duration,
        cost=CostEstimate(
            currency="USD",
            batch=cost.batch if cost else None,
            realtime=cost.realtime if cost else None,
            savings=cost.savings if cost else None,
            batch_at_ceiling=at_ceiling.batch if at_ceiling else None,
            batch_discount=prices.batch_discount,
            note=(
                "at the configured prices, for the prompt and the expected output tokens"
                if priced
                else "no prices configured for this model ([pricing] or its [[models]] entry)"
            ),
        ),
        created_at=int(now),
    )


def _duration(
    db: Database,
    endpoint: endpoints.AnyEndpoint,
    model: str | None,
    work: int | None,
    place: completion.QueuePlace,
    now: float,
) -> Duration:
    if model is None or work is None:
        reason = "nothing to run" if model is None else "the expected output is unknown"
        return Duration(None, None, None, 0, 0, None, None, reason)
    task = endpoint.task
    with db.read() as conn:
        rate, ahead = completion.rate_and_queue(conn, model, task, place, now)
    own = forecast.seconds_for(work, rate)
    before = forecast.seconds_for(ahead.num_tokens, rate)
    total = None if own is None or before is None else own + before
    kind = "output" if task == "generate" else "input"
    if rate.tokens_per_second is None:
        basis = (
            f"no batch work of {model} was metered in the last {forecast.RATE_WINDOW_NAME}: "
            "the duration is known once this deployment has run some"
        )
    else:
        basis = (
            f"{rate.tokens_per_second:,.1f} {kind} tokens/s: {model}'s metered batch engine "
            f"time in the last {forecast.RATE_WINDOW_NAME} ({rate.seconds:,.1f} s, "
            f"{rate.num_tokens:,} tokens); {ahead.num_requests:,} open requests of earlier "
            "deadlines run first; real-time traffic, which goes first, is not foreseen"
        )
    return Duration(
        expected_seconds=total,
        seconds_for_this_batch=own,
        seconds_queued_ahead=before,
        num_requests_queued_ahead=ahead.num_requests,
        tokens_queued_ahead=round(ahead.num_tokens),
        tokens_per_second=rate.tokens_per_second,
        expected_completion_at=forecast.completion_at(now, total),
        basis=basis,
    )


# --- inputs --------------------------------------------------------------------------------


def endpoint_of(first: dict[str, Any] | None, given: str | None) -> str:
    """The endpoint to check the lines against: the one given, else the first line's url."""
    if given is not None:
        return given
    url = first.get("url") if first else None
    return url if isinstance(url, str) else "/v1/chat/completions"


def estimate_blob(
    settings: Settings,
    registry: Registry,
    db: Database,
    blobs: BlobStorage,
    blob: str,
    endpoint_url: str | None,
    *,
    engines: EnginePool | None = None,
    place: completion.QueuePlace | None = None,
    project: str = files.DEFAULT_PROJECT,
    use_cache: bool = True,
) -> Estimate:
    """Estimate a stored batch input file of `project`'s."""
    limit = settings.limits.max_line_bytes
    if endpoint_url is None:
        with blobs.open(blob) as fh:
            endpoint_url = endpoint_of(batch_input.first_object(fh, limit), None)
    with blobs.open(blob) as fh:
        return estimate(
            settings,
            registry,
            db,
            [iter_lines(fh, limit)],
            endpoint_url,
            engines=engines,
            place=place,
            project=project,
            use_cache=use_cache,
        )


def estimate_path(
    settings: Settings,
    registry: Registry,
    db: Database,
    path: Path,
    endpoint_url: str | None,
    *,
    engines: EnginePool | None = None,
    project: str = files.DEFAULT_PROJECT,
) -> Estimate:
    """Estimate a batch input file on disk (`freight estimate FILE`) as `project`'s batch."""
    limit = settings.limits.max_line_bytes
    with open(path, "rb") as fh:
        endpoint_url = endpoint_of(batch_input.first_object(fh, limit), endpoint_url)
        fh.seek(0)
        return estimate(
            settings,
            registry,
            db,
            [iter_lines(fh, limit)],
            endpoint_url,
            engines=engines,
            project=project,
        )


# --- the API's estimate --------------------------------------------------------------------


def estimate_request(
    svc: Service,
    visible: str | None,
    *,
    input_file_id: str | None,
    batch_id: str | None,
    endpoint: str | None,
) -> Estimate:
    """POST /v1/batches/estimate: an input file of the caller's (with its endpoint, or its
    first line's), or an existing batch's input file and endpoint. Others' ids are 404s."""
    neither_or_both = InvalidRequest(
        "Give exactly one of input_file_id (an uploaded batch input file) and batch_id "
        "(an existing batch, estimated from its input file).",
        param="input_file_id" if input_file_id is None else "batch_id",
    )
    if input_file_id is not None and batch_id is not None:
        raise neither_or_both
    place = None
    use_cache = True
    with svc.db.read() as conn:
        if batch_id is not None:
            if endpoint is not None:
                raise InvalidRequest(
                    "endpoint goes with input_file_id; a batch is estimated at its own endpoint.",
                    param="endpoint",
                )
            batch = batches.get(conn, batch_id, visible, api="openai")
            if batch.input_file_id is None:
                raise InvalidRequest(f"Batch {batch_id} has no input file.", param="batch_id")
            input_file_id, endpoint = batch.input_file_id, batch.endpoint
            place = completion.QueuePlace(
                batch.expires_at, batch.created_ns, batch.id, batch.priority
            )
            use_cache = batch.cache
        if input_file_id is None:
            raise neither_or_both
        try:
            record = files.get(conn, input_file_id, visible)
        except NotFound as exc:  # named as this request names it
            raise NotFound(exc.message, param="input_file_id") from None
    if record.purpose != "batch":
        raise InvalidRequest(
            f"File {record.id} has purpose '{record.purpose}'; an estimate reads a batch input "
            "file (purpose 'batch').",
            param="input_file_id",
        )
    if endpoint is not None:
        endpoints.get(endpoint)  # a 400 naming the endpoints there are
    try:
        return estimate_blob(
            svc.settings,
            svc.registry,
            svc.db,
            svc.blobs,
            record.blob,
            endpoint,
            engines=svc.engines,
            place=place,
            project=record.project,  # the file's owner: the project its batch belongs to
            use_cache=use_cache,
        )
    except FileNotFoundError:
        raise NotFound(
            f"The contents of file {record.id} are gone.", param="input_file_id"
        ) from None
