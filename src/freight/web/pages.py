"""The dashboard's pages: batches with live progress, one batch, upload-and-create, cost.

Server-rendered (Jinja2, templates/), with one small script (static/app.js) that polls
`/ui/progress` to move the progress bars. Every page is scoped to the signed-in
browser's project (web/session.py) and reads a bounded amount: one page of batches by
the same cursor the API uses, one batch's aggregates, or per-day batch totals.

Blob calls stay off the event loop: the upload streams in through api/uploads.py, and
the pages that look at or serve a blob are plain `def`s (FastAPI's threadpool).
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from freight import ids
from freight.api import downloads, uploads
from freight.api.deps import service
from freight.errors import FreightError, InvalidRequest, NotFound
from freight.protocol import endpoints, openai_wire
from freight.service import access, completion, intake, retry
from freight.service.runtime import Service
from freight.store import batches, blob_store, files, usage
from freight.usage import pricing
from freight.web import batch_control, charts, economics, session

TEMPLATES = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES)
router = APIRouter(include_in_schema=False)
COST_DAYS = 30


def when(unix: float | None) -> str:
    return "" if unix is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


templates.env.filters["when"] = when
templates.env.filters["short_when"] = lambda unix: time.strftime("%m-%d %H:%M", time.gmtime(unix))
templates.env.filters["money"] = pricing.format_usd


def batch_row(batch: batches.BatchRecord, prices: pricing.PriceBook) -> dict[str, Any]:
    """What the batches list shows of one batch."""
    cost = prices.cost(batch.model, batch.input_tokens, batch.output_tokens)
    return {
        "batch": batch,
        "progress": charts.progress(batch),
        "cost": cost,
    }


def page_links(
    records: list[batches.BatchRecord], has_more: bool, *, after: str | None, before: str | None
) -> tuple[str | None, str | None]:
    """Cursors for the Newer and Older links of a newest-first page (None: no link).

    `has_more` is list_page's: more in the direction the page was read (older after
    `after` or from the top; newer before `before`). The other direction has more
    exactly when a cursor was given.
    """
    if not records:
        return None, None
    more_newer = has_more if before else after is not None
    more_older = True if before else has_more
    return (records[0].id if more_newer else None, records[-1].id if more_older else None)


# --- sign-in ----------------------------------------------------------------------------------


@router.get("/ui/login")
def login_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/ui/login")
def login(request: Request, api_key: str = Form("")) -> Response:
    try:
        session.sign_in(request, api_key.strip())
    except FreightError as exc:
        return templates.TemplateResponse(
            request, "login.html", {"error": exc.message}, status_code=exc.status_code
        )
    return RedirectResponse("/", status_code=303)


@router.post("/ui/logout")
def logout(request: Request) -> Response:
    session.sign_out(request)
    return RedirectResponse("/ui/login", status_code=303)


# --- batches ----------------------------------------------------------------------------------


def _index(
    request: Request,
    svc: Service,
    owner: str,
    visible: str | None,
    *,
    after: str | None = None,
    before: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    prices = pricing.PriceBook(svc.settings)
    with svc.db.read() as conn:
        records, has_more = batches.list_page(
            conn,
            api=None,
            project=visible,
            after=after,
            before=before,
            limit=svc.settings.web.page_size,
        )
    newer, older = page_links(records, has_more, after=after, before=before)
    context = {
        "project": owner,
        "rows": [batch_row(b, prices) for b in records],
        "newer": newer,
        "older": older,
        "endpoints": list(endpoints.ENDPOINTS),
        "error": error,
    }
    return templates.TemplateResponse(request, "index.html", context, status_code=status_code)


@router.get("/")
def index(
    request: Request,
    after: str | None = None,
    before: str | None = None,
    svc: Service = Depends(service),
    who: access.Identity = Depends(session.identity),
) -> Response:
    try:
        return _index(request, svc, who.project, who.scope, after=after, before=before)
    except NotFound:  # a stale cursor (its batch was deleted): start over
        return RedirectResponse("/", status_code=303)


@router.post("/ui/batches")
async def create_batch(
    request: Request,
    svc: Service = Depends(service),
    who: access.Identity = Depends(session.identity),
) -> Response:
    """Upload a JSONL file and create a batch from it, in one form."""
    owner = who.project
    blob = ids.new_id("blob-")
    max_bytes = svc.settings.limits.max_file_bytes
    try:
        async with uploads.holding(request, svc, owner, blob, max_bytes) as hold:
            upload = await uploads.receive(request, svc.blobs, blob, max_bytes, hold=hold)
            if upload.num_bytes == 0:
                raise InvalidRequest(
                    "The file is empty: choose a JSONL file with one request a line."
                )
            create = openai_wire.CreateBatch(
                input_file_id=hold.file_id,
                endpoint=upload.fields.get("endpoint") or "/v1/chat/completions",
                completion_window=upload.fields.get("completion_window") or "24h",
            )
            batch = await asyncio.to_thread(
                functools.partial(
                    intake.create_openai_batch_from_upload,
                    svc,
                    hold,
                    create,
                    filename=upload.filename,
                    num_bytes=upload.num_bytes,
                )
            )
    except FreightError as exc:
        return await asyncio.to_thread(
            _index, request, svc, owner, who.scope, error=exc.message, status_code=exc.status_code
        )
    svc.kick_worker()
    return RedirectResponse(f"/ui/batches/{batch.id}", status_code=303)


@router.get("/ui/batches/{batch_id}")
def batch_page(
    request: Request,
    batch_id: str,
    svc: Service = Depends(service),
    who: access.Identity = Depends(session.identity),
) -> Response:
    owner, visible = who.project, who.scope
    with svc.db.read() as conn:
        try:
            batch = batches.get(conn, batch_id, visible)
        except NotFound as exc:
            return templates.TemplateResponse(
                request, "error.html", {"error": exc.message}, status_code=404
            )
        batch = completion.with_live_completion(conn, batch)
        span = usage.batch_finish_span(conn, batch_id)
        start = float(batch.in_progress_at or batch.created_at)
        end = span[1] if span else start
        bucket = charts.throughput_bucket(end - start)
        points = usage.batch_throughput(conn, batch_id, bucket_seconds=bucket) if span else []
        output_file = _file(conn, batch.output_file_id, visible)
        error_file = _file(conn, batch.error_file_id, visible)
        latest = batch_control.latest_answers(conn, batch_id)
    prices = pricing.PriceBook(svc.settings)
    run_seconds = end - start if span else None
    has_message_results = (
        batch.api == "anthropic"
        and batch.is_terminal
        and svc.blobs.exists(blob_store.message_batch_results(batch.id))
    )
    context = {
        "project": owner,
        "row": batch_row(batch, prices),
        "b": batch,
        "discount": prices.batch_discount,
        "chart": charts.throughput_svg(points, bucket_seconds=bucket, start=start),
        "tokens_per_second": (
            batch.output_tokens / run_seconds if run_seconds and run_seconds > 0 else None
        ),
        "run_seconds": run_seconds,
        "output_file": output_file,
        "error_file": error_file,
        "has_message_results": has_message_results,
        "latest": latest,
        "can_retry": batch.api == "openai"
        and batch.is_terminal
        and bool(batch.num_finished)
        and batch.num_succeeded < batch.num_finished,
    }
    return templates.TemplateResponse(request, "batch.html", context)


@router.post("/ui/batches/{batch_id}/retry")
async def retry_batch(
    request: Request,
    batch_id: str,
    svc: Service = Depends(service),
    who: access.Identity = Depends(session.identity),
) -> Response:
    """The batch page's retry button: a new batch of the requests that did not succeed."""
    try:
        batch = await asyncio.to_thread(retry.retry_batch, svc, batch_id, who.scope, include=[])
    except FreightError as exc:
        return templates.TemplateResponse(
            request, "error.html", {"error": exc.message}, status_code=exc.status_code
        )
    svc.kick_worker()
    return RedirectResponse(f"/ui/batches/{batch.id}", status_code=303)


def _file(conn: Any, file_id: str | None, visible: str | None) -> files.FileRecord | None:
    if not file_id:
        return None
    try:
        return files.get(conn, file_id, visible)
    except NotFound:
        return None


@router.get("/ui/progress")
def progress(
    ids: list[str] = Query(default_factory=list, max_length=500),
    svc: Service = Depends(service),
    visible: str | None = Depends(session.scope),
) -> JSONResponse:
    """Status and counts of the listed batches (the progress bars' poll)."""
    found: dict[str, dict[str, Any]] = {}
    with svc.db.read() as conn:
        for batch_id in dict.fromkeys(ids):
            try:
                batch = batches.get(conn, batch_id, visible)
            except NotFound:
                continue
            done = charts.progress(batch)
            expected = completion.with_live_completion(conn, batch).expected_completion_at
            found[batch_id] = {
                "expected_completion": when(expected) or "not known yet",
                "status": batch.status,
                "done": done.num_done,
                "total": done.num_total,
                "percent": done.percent,
                "is_terminal": batch.is_terminal,
                "num_succeeded": batch.num_succeeded,
                "num_errored": batch.num_errored,
                "input_tokens": batch.input_tokens,
                "output_tokens": batch.output_tokens,
            }
    return JSONResponse({"batches": found})


@router.get("/ui/files/{file_id}")
def download(
    file_id: str, svc: Service = Depends(service), visible: str | None = Depends(session.scope)
) -> Response:
    return downloads.file_response(svc, file_id, visible, media_type="application/jsonl")


@router.get("/ui/batches/{batch_id}/results")
def message_batch_results(
    batch_id: str, svc: Service = Depends(service), visible: str | None = Depends(session.scope)
) -> Response:
    """An Anthropic Message Batch's results file (OpenAI batches have output/error files)."""
    with svc.db.read() as conn:
        batch = batches.get(conn, batch_id, visible, api="anthropic")
    missing = NotFound(f"Message Batch {batch_id} has no results yet.", param="batch_id")
    if not batch.is_terminal:
        raise missing
    return downloads.blob_response(
        svc.blobs,
        blob_store.message_batch_results(batch.id),
        media_type="application/jsonl",
        filename=f"{batch_id}_results.jsonl",
        missing=missing,
    )


# --- cost -------------------------------------------------------------------------------------


@router.get("/ui/cost")
def cost_page(
    request: Request,
    svc: Service = Depends(service),
    who: access.Identity = Depends(session.identity),
) -> Response:
    now = int(time.time())
    since = now - now % usage.DAY_SECONDS - (COST_DAYS - 1) * usage.DAY_SECONDS
    context = economics.cost_page(svc, who.scope, since=since)
    context["project"] = who.project
    return templates.TemplateResponse(request, "cost.html", {**context, "days": COST_DAYS})
