"""The Ray driver: run one batch's queued requests on a Ray cluster, results into the store.

    lease   every queued request of the batch, to this run's owner, in one statement
    read    LeasedRequests: ranges of lines, streamed from the store (source.py)
    run     map_batches over `num_actors` EngineActors (actor.py)
    record  each block of results in one write transaction as it arrives: counts live
    end     whatever was not recorded goes back to the queue (release); a batch that is
            cancelled or expires meanwhile stops the run at its next block

The store stays the source of truth: a request's result counts only if recorded while
its row is still leased (`batch_requests.record`), the run renews its leases on a heartbeat,
and if the driver dies its leases run out and workers reclaim the requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from freight.config import Settings
from freight.store import batch_requests, batches
from freight.store.db import Database
from freight.store.statuses import BatchStatus

log = logging.getLogger(__name__)

_connect_lock = threading.Lock()
NODE_ID_LABEL = "ray.io/node-id"  # every Ray node carries it


@dataclass
class RayRun:
    """What one run did."""

    num_leased: int = 0
    num_recorded: int = 0
    num_requeued: int = 0


def connect(address: str | None, *, verbose: bool = False) -> None:
    """Join the Ray cluster at `address` ('auto': this node's; None or 'local': a new one)."""
    import ray
    from ray.data import DataContext

    with _connect_lock:
        if ray.is_initialized():
            return
        ray.init(
            address=None if address in (None, "local") else address,
            include_dashboard=False,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
        DataContext.get_current().enable_progress_bars = False  # Freight shows its own
        if not verbose:
            logging.getLogger("ray.data").setLevel(logging.ERROR)


def run_batch(
    db: Database,
    settings: Settings,
    batch_id: str,
    owner: str,
    *,
    on_recorded: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> RayRun:
    """Run the batch's queued requests on the connected Ray cluster; see the module doc."""
    import ray

    from freight.cluster.actor import TRANSIENT, EngineActor, outcome
    from freight.cluster.source import LeasedRequests

    lease = settings.worker.lease_seconds
    with db.write() as conn:
        leased = batch_requests.claim_all(conn, batch_id, owner, lease)
    result = RayRun()
    if leased is None:
        return result
    result.num_leased = leased.num_requests
    stop = stop or threading.Event()
    done = threading.Event()
    heartbeat = threading.Thread(target=_heartbeat, args=(db, owner, lease, done), daemon=True)
    heartbeat.start()
    config = settings.ray
    read_args: dict[str, Any] = {"num_cpus": 0}
    if db.is_sqlite:  # only the driver's machine can open the file
        read_args["label_selector"] = {NODE_ID_LABEL: ray.get_runtime_context().get_node_id()}
    log.info(
        "batch %s: %d requests to Ray (%d actors)", batch_id, result.num_leased, config.num_actors
    )
    try:
        source = LeasedRequests(
            db.url, batch_id, owner, leased.first_line, leased.last_line, config.rows_per_read
        )
        dataset = ray.data.read_datasource(source, **read_args).map_batches(
            EngineActor,
            fn_constructor_kwargs={"settings_json": _for_actors(settings)},
            batch_format="pyarrow",
            batch_size=config.batch_size,
            compute=ray.data.ActorPoolStrategy(
                size=config.num_actors,
                max_tasks_in_flight_per_actor=config.max_concurrent_batches,
                max_concurrent_calls_per_actor=config.max_concurrent_batches,
                enable_true_multi_threading=True,
            ),
            num_cpus=config.num_cpus_per_actor,
            num_gpus=config.num_gpus_per_actor,
        )
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = block.to_pylist()
            finished = [outcome(r) for r in rows if r["status"] != TRANSIENT]
            retry = [r["request_id"] for r in rows if r["status"] == TRANSIENT]
            with db.write() as conn:
                num = batch_requests.record(conn, finished)
                for request_id in retry:
                    result.num_requeued += batch_requests.requeue(conn, request_id)
                batch = batches.get(conn, batch_id)
            result.num_recorded += num
            if on_recorded is not None:
                on_recorded(num)
            # Cancelled or past its window: stop here; the worker ends the batch as usual.
            if (
                stop.is_set()
                or batch.status != BatchStatus.IN_PROGRESS
                or time.time() >= batch.expires_at
            ):
                log.info("batch %s: the Ray run stops early (%s)", batch_id, batch.status)
                break
    finally:
        done.set()
        heartbeat.join()
        with db.write() as conn:
            num_released = batch_requests.release(conn, owner)
        if num_released:
            log.info("batch %s: %d requests back to the queue", batch_id, num_released)
    return result


def _for_actors(settings: Settings) -> str:
    """The settings the actors run with: this process's, with absolute paths (an actor's
    working directory is not the driver's)."""
    paths = {"home": settings.home.resolve()}
    if settings.model_cache is not None:
        paths["model_cache"] = settings.model_cache.resolve()
    return settings.model_copy(update=paths).model_dump_json()


def _heartbeat(db: Database, owner: str, lease_seconds: float, done: threading.Event) -> None:
    while not done.wait(lease_seconds / 3):
        try:
            with db.write() as conn:
                batch_requests.renew(conn, owner, lease_seconds)
        except Exception:  # the next beat tries again; a lost lease is reclaimed safely
            log.exception("could not renew the Ray run's leases")
