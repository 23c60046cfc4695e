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

from freight.config import DEFAULT_EMBEDDING_MODEL, ModelSettings, Settings
from freight.engines import embeddings, engine_args
from freight.errors import ConfigError
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

    with db.read() as conn:
        model = batches.get(conn, batch_id).model
    # Refused before anything is leased: a configuration that cannot run leaves the batch
    # to the workers. The driver imports vLLM (once per process) only where the installed
    # build does not already say the device: the actors start the engines, not it.
    device = engine_args.detect_without_vllm() or engine_args.detect()
    num_gpus = gpus_per_actor(settings, model, device)
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
        "batch %s: %d requests to Ray (%d actors, %g GPUs each)",
        batch_id,
        result.num_leased,
        config.num_actors,
        num_gpus,
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
            num_gpus=num_gpus,
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


def gpus_per_actor(settings: Settings, model: str | None, device: engine_args.Device) -> float:
    """The GPUs each engine actor reserves for a batch of `model` (None: of several).

    On CUDA an actor must hold GPUs of its own: Ray shows an actor only the GPUs it
    reserved, and with none reserved every actor's engine opens cuda:0 and asks for its
    memory share there, so only the first starts. By default an actor reserves the GPUs
    its model's engine uses (tensor parallelism runs inside the actor); an explicit 0, or
    fewer than a model split across several GPUs needs, is refused. On CPU nothing is
    reserved unless set. `device` is the driver's (vLLM's platform here), taken to be the
    actors' too: the nodes of one cluster run one build of vLLM.
    """
    chosen = settings.ray.num_gpus_per_actor
    if not device.is_cuda:
        return chosen or 0.0
    names = [model] if model is not None else [m.name for m in settings.models]
    if model is None:  # a batch of several models: any of them, the default too
        names.append(settings.default_model)
    needed, name = max((_model_gpus(settings, n), n) for n in names)
    if chosen is None:
        return float(needed)
    where = f"[ray] num_gpus_per_actor = {chosen:g}"
    if chosen == 0 and needed > 0:
        raise ConfigError(
            f"{where}: vLLM runs on CUDA here, and actors without GPUs of their own would "
            f"all open cuda:0; leave it unset (each actor then reserves the GPUs its model "
            f"uses: {needed} for '{name}') or set it to at least 1"
        )
    if needed > 1 and chosen < needed:
        raise ConfigError(
            f"{where}: '{name}' runs on {needed} GPUs (tensor_parallel_size x "
            "data_parallel_size) and an actor sees only the GPUs it reserves; leave it "
            f"unset or set it to at least {needed}"
        )
    return chosen


def _model_gpus(settings: Settings, name: str) -> int:
    """The GPUs one engine of the model `name` takes: its vLLM parallel layout, one for
    an embeddings model placed on a GPU, none for the rest (echo, upstreams)."""
    entry = next((m for m in settings.models if m.name == name), None)
    if entry is None:  # an embedded default: the toy chat model on one GPU, or MiniLM
        is_embedder = name == DEFAULT_EMBEDDING_MODEL
        return _embedder_gpus(settings, None) if is_embedder else 1
    if entry.engine == "vllm":
        return entry.tensor_parallel_size * entry.data_parallel_size
    if entry.engine == "embeddings":
        return _embedder_gpus(settings, entry)
    return 0


def _embedder_gpus(settings: Settings, entry: ModelSettings | None) -> int:
    return int(embeddings.device_for(settings.embeddings, entry).startswith("cuda"))


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
