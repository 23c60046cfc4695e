"""`freight run`: a batch file through the same validation, worker and line format, no server.

The run uses a private SQLite store in a temporary folder under FREIGHT_HOME/runs,
so it gets exactly the service's behaviour (validation codes, retries, per-line
errors, output order) and leaves nothing behind but the output files.

With `--ray`, the same store, validation and finalisation surround a different
executor: instead of this process's worker and engine, the batch's requests stream
through engine actors on a Ray cluster (cluster/executor.py), and this process only
records their results (the progress bar follows them live).
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from freight import ids
from freight.config import Settings
from freight.engines.pool import EnginePool
from freight.protocol import openai_wire
from freight.service.intake import create_openai_batch
from freight.service.runtime import Service
from freight.store import batch_requests, batches, files
from freight.store.blob_store import BlobStore
from freight.store.statuses import BatchStatus, RequestStatus
from freight.upstream import passthrough
from freight.worker import ingest, lifecycle, scheduler

RUN_WINDOW = "3650d"  # an offline run has no deadline
RAY_GAVE_UP = json.dumps(
    {
        "code": "engine_error",
        "message": "The request failed on the Ray cluster in every attempt "
        "(worker.max_attempts); the actors' logs say why.",
    }
)


def first_url(path: Path) -> str:
    """The `url` of the first parseable line, to use as the run's endpoint."""
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                url = json.loads(raw).get("url")
            except (ValueError, AttributeError):
                continue
            if isinstance(url, str):
                return url
    return "/v1/chat/completions"


def with_model(source: Path, model: str, target: Path) -> Path:
    """`source` with every line's `body.model` set to `model` (`freight run --model`),
    written to `target`. A line that is not a JSON object with a body object is copied as
    it is: validation reports it with its line number, as it would without --model."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        for raw in src:
            try:
                line = json.loads(raw)
            except (ValueError, RecursionError):  # the validator says what is wrong
                line = None
            if isinstance(line, dict) and isinstance(line.get("body"), dict):
                line["body"]["model"] = model
                raw = json.dumps(line, ensure_ascii=False).encode() + b"\n"
            dst.write(raw)
    return target


def run_file(
    settings: Settings,
    input_path: Path,
    output: Path,
    errors: Path | None,
    endpoint: str | None,
    *,
    console: Console,
    ray_address: str | None = None,
    append: bool = False,
) -> int:
    """Run `input_path`; write results; return the exit code (see freight.cli.main).

    `ray_address`: run on that Ray cluster ('local': start one here) instead of here.
    `append`: add the result lines to `output` (`freight run --resume`) instead of
    replacing it.
    """
    return asyncio.run(
        run_file_async(
            settings,
            input_path,
            output,
            errors,
            endpoint,
            console=console,
            ray_address=ray_address,
            append=append,
        )
    )


async def run_file_async(
    settings: Settings,
    input_path: Path,
    output: Path,
    errors: Path | None,
    endpoint: str | None,
    *,
    console: Console,
    engines: EnginePool | None = None,
    ray_address: str | None = None,
    append: bool = False,
) -> int:
    """`run_file` inside a running event loop, optionally on already-started engines."""
    batch = await run_batch_file(
        settings,
        input_path,
        output,
        errors,
        endpoint,
        console=console,
        engines=engines,
        ray_address=ray_address,
        append=append,
    )
    return report(batch, output, errors, console)


async def run_batch_file(
    settings: Settings,
    input_path: Path,
    output: Path,
    errors: Path | None,
    endpoint: str | None,
    *,
    console: Console,
    engines: EnginePool | None = None,
    ray_address: str | None = None,
    append: bool = False,
) -> batches.BatchRecord:
    """Run `input_path` and write its result lines, unless it failed validation; the batch
    as it ended, for callers that report on it themselves (a table's run of many)."""
    runs = settings.home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=runs) as tmp:
        run_settings = settings.model_copy(
            update={"database_url": f"sqlite:///{Path(tmp).resolve() / 'run.db'}"}
        )
        svc = Service(
            run_settings,
            engines=engines,
            blobs=BlobStore(Path(tmp) / "files"),
            with_worker=ray_address is None,
        )
        return await _run(
            svc,
            Path(tmp),
            input_path,
            output,
            errors,
            endpoint or first_url(input_path),
            console,
            ray_address,
            append,
        )


async def _run(
    svc: Service,
    tmp: Path,
    input_path: Path,
    output: Path,
    errors: Path | None,
    endpoint: str,
    console: Console,
    ray_address: str | None,
    append: bool = False,
) -> batches.BatchRecord:
    try:
        (tmp / "files" / "input").symlink_to(input_path.resolve())
        record = files.new_record(
            project=files.DEFAULT_PROJECT,
            filename=input_path.name,
            purpose="batch",
            num_bytes=input_path.stat().st_size,
            blob="input",
        )
        with svc.db.write() as conn:
            files.insert(conn, record)
        batch = create_openai_batch(
            svc,
            files.DEFAULT_PROJECT,
            openai_wire.CreateBatch(
                input_file_id=record.id, endpoint=endpoint, completion_window=RUN_WINDOW
            ),
            is_bounded=False,
        )
        if ray_address is not None:
            batch = await _run_on_ray(svc, batch.id, ray_address, console)
            _write_results(svc, batch, output, errors, append=append)
            return batch
        assert svc.worker is not None
        stop = asyncio.Event()
        worker = asyncio.create_task(svc.worker.run(stop))
        try:
            batch = await _watch(svc, batch.id, console)
        finally:
            stop.set()
            await worker
        _write_results(svc, batch, output, errors, append=append)
        return batch
    finally:
        await svc.close()


async def _run_on_ray(
    svc: Service, batch_id: str, address: str, console: Console
) -> batches.BatchRecord:
    """Validate here, run on the Ray cluster, finalise here; the bar follows the store."""
    from freight.cluster import executor

    settings = svc.settings

    def validate() -> batches.BatchRecord:
        with svc.db.read() as conn:
            batch = batches.get(conn, batch_id)
        return ingest.ingest_openai_batch(
            svc.db,
            svc.blobs,
            batch,
            settings.limits,
            scheduler.OrderPolicy.from_settings(settings.scheduler),
            has_model=svc.registry.has,
            check_model=functools.partial(passthrough.serving_problem, svc.registry, in_batch=True),
            canonical_model=svc.registry.canonical,
        )

    def execute() -> None:
        owner = f"freight-run-{ids.new_id('')[:8]}"
        for _ in range(settings.worker.max_attempts):  # transient failures run again
            executor.run_batch(svc.db, settings, batch_id, owner)
            with svc.db.read() as conn:
                if batches.get(conn, batch_id).num_open == 0:
                    break
        else:
            with svc.db.write() as conn:
                batch_requests.close_open(conn, batch_id, RequestStatus.ERRORED, RAY_GAVE_UP)
        lifecycle.OPENAI_BATCHES.finalize(svc.db, svc.blobs, batch_id, BatchStatus.COMPLETED)

    batch = await asyncio.to_thread(validate)
    if batch.status != BatchStatus.IN_PROGRESS:
        return batch  # failed validation: nothing runs, no cluster is needed
    executor.connect(address)  # in the main thread, where Ray may install signal handlers
    job = asyncio.create_task(asyncio.to_thread(execute))
    watching = asyncio.create_task(_watch(svc, batch_id, console))
    done, _ = await asyncio.wait({job, watching}, return_when=asyncio.FIRST_EXCEPTION)
    if job in done and job.exception() is not None:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        raise job.exception()  # type: ignore[misc]
    return await watching


async def _watch(svc: Service, batch_id: str, console: Console) -> batches.BatchRecord:
    started = time.monotonic()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(BatchStatus.VALIDATING, total=None, rate="")
        while True:
            with svc.db.read() as conn:
                batch = batches.get(conn, batch_id)
            elapsed = max(time.monotonic() - started, 1e-9)
            progress.update(
                task,
                description=batch.status,
                total=batch.num_total or None,
                completed=batch.num_finished,
                rate=f"{batch.output_tokens / elapsed:,.0f} tok/s",
            )
            if batch.is_terminal:
                return batch
            await asyncio.sleep(0.25)


def _write_results(
    svc: Service,
    batch: batches.BatchRecord,
    output: Path,
    errors: Path | None,
    *,
    append: bool = False,
) -> None:
    """Copy the batch's output lines to `output`, its error lines to `errors` (or after
    the output lines); a batch that failed validation writes nothing. `append`: after
    what `output` holds (`errors` is written afresh either way)."""
    if batch.status == BatchStatus.FAILED:
        return
    with svc.db.read() as conn:
        out_file = files.get(conn, batch.output_file_id) if batch.output_file_id else None
        err_file = files.get(conn, batch.error_file_id) if batch.error_file_id else None
    with open(output, "ab" if append else "wb") as out_fh:
        if out_file is not None:
            with svc.blobs.open(out_file.blob) as src:
                shutil.copyfileobj(src, out_fh)
        if err_file is not None and errors is None:
            with svc.blobs.open(err_file.blob) as src:
                shutil.copyfileobj(src, out_fh)
    if errors is not None:
        with open(errors, "wb") as err_fh:
            if err_file is not None:
                with svc.blobs.open(err_file.blob) as src:
                    shutil.copyfileobj(src, err_fh)


def report(batch: batches.BatchRecord, output: Path, errors: Path | None, console: Console) -> int:
    """Print how the run ended; its exit code (see freight.cli.main)."""
    if batch.status == BatchStatus.FAILED:
        console.print(validation_errors(batch))
        return 1
    num_failed = batch.num_errored + batch.num_cancelled + batch.num_expired
    console.print(
        f"{batch.status}: {batch.num_succeeded} succeeded, {num_failed} failed; "
        f"{batch.input_tokens} input and {batch.output_tokens} output tokens -> {output}"
        + (f" (errors -> {errors})" if errors is not None and num_failed else "")
    )
    if batch.status != BatchStatus.COMPLETED:
        return 1
    return 3 if num_failed else 0


def validation_errors(batch: batches.BatchRecord) -> Table:
    """A failed batch's validation errors, one row per problem."""
    table = Table("line", "code", "message", title="The input file is invalid")
    for e in batch.errors or []:
        table.add_row(str(e.get("line") or ""), e.get("code") or "", e.get("message") or "")
    return table
