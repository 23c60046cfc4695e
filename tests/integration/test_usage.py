"""Usage in the store: metered engine time, delivered tokens, report rows, the recorder."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from freight.config import PricingSettings
from freight.engines.echo import EchoEngine
from freight.engines.metering import BATCH, IDLE
from freight.store import usage
from freight.store.db import open_database
from freight.usage import report
from freight.usage.recorder import UsageRecorder
from tests.conftest import chat_line, make_settings
from tests.integration.test_worker import TERMINAL, run_until, service, submit
from tests.seed import DAY1, DAY2, add_engine_time, seed_two_days

PRICED = PricingSettings(
    input_price=1.0, output_price=2.0, batch_discount=0.5, hardware_per_hour=3.6
)


def test_engine_usage_adds_up_per_node_and_sums_across_nodes(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url)
    for node in ("a", "a", "b"):
        add_engine_time(db, model="m", kind=BATCH, period_start=DAY1, seconds=1.5, node=node)
    with db.read() as conn:
        (row,) = usage.engine_usage_by_bucket(conn, since=DAY1, bucket_seconds=86_400)
        num_rows = conn.exec_driver_sql("select count(*) from engine_usage").scalar_one()
    assert (row.model, row.kind, row.seconds, row.bucket_start) == ("m", BATCH, 4.5, DAY1)
    assert num_rows == 2  # one row per node and period: nodes never write the same row


def test_delivered_tokens_roll_up_per_day_project_and_model(
    tmp_path: Path, database_url: str
) -> None:
    db = open_database(database_url)
    seed_two_days(db)
    with db.read() as conn:
        rows = usage.delivered_by_bucket(conn, since=DAY1, bucket_seconds=86_400)
        only_beta = usage.delivered_by_bucket(
            conn, since=DAY1, bucket_seconds=86_400, project="beta"
        )
        days = usage.batch_days(conn, since=DAY1, project="beta")
    assert [
        (r.bucket_start, r.project, r.num_requests, r.input_tokens, r.output_tokens) for r in rows
    ] == [
        (DAY1, "alpha", 3, 3000, 1500),  # the errored request is not delivered work
        (DAY1, "beta", 2, 4000, 2000),
        (DAY2, "beta", 1, 1000, 1000),
    ]
    assert [r.project for r in only_beta] == ["beta", "beta"]
    # the batch view counts a batch whole, on the day it ended
    assert [(d.day_start, d.num_batches, d.input_tokens) for d in days] == [(DAY2, 1, 5000)]


def test_report_rows_price_delivered_tokens_and_measure_engine_time(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, pricing=PRICED, database_url=database_url)
    db = open_database(settings.sqlalchemy_url, settings.home)
    seed_two_days(db)
    result = report.build(db, settings, since=DAY1, until=DAY2 + 86_400)
    rows = {(r.day, r.project, r.kind): r for r in result.rows}
    alpha = rows[("2026-01-01", "alpha", "batch")]
    assert (alpha.num_requests, alpha.input_tokens, alpha.output_tokens) == (3, 3000, 1500)
    assert alpha.realtime_cost == Decimal("0.006000")  # 3000 x $1/M + 1500 x $2/M
    assert alpha.batch_cost == Decimal("0.003000") and alpha.savings == Decimal("0.003000")
    # engine columns: batch time 100 s for 3500 output tokens of all projects that day
    assert alpha.tokens_per_second == pytest.approx(35.0)
    assert alpha.utilization == pytest.approx(150 / 450)  # (100 + 50) busy of 450 up
    # $3.60/h x 100 s = $0.10 over 10,500 delivered tokens
    assert alpha.measured_usd_per_mtok == Decimal("9.523810")
    assert rows[("2026-01-01", "beta", "batch")].measured_usd_per_mtok == Decimal("9.523810")
    realtime = rows[("2026-01-01", "*", "realtime")]
    assert (realtime.num_requests, realtime.input_tokens, realtime.output_tokens) == (
        10,
        5000,
        2500,
    )
    assert realtime.realtime_cost == Decimal("0.010000") and realtime.batch_cost is None
    assert realtime.measured_usd_per_mtok == Decimal("6.666667")  # $0.05 / 7,500 tokens
    day2 = rows[("2026-01-02", "beta", "batch")]
    assert day2.tokens_per_second == pytest.approx(50.0)  # 1000 tokens in 20 s
    assert day2.utilization == pytest.approx(1.0)
    totals = result.totals()
    assert totals["num_requests"] == 3 + 2 + 1 + 10
    assert totals["batch_cost"] == Decimal("0.003000") + Decimal("0.004000") + Decimal("0.0015")


def test_report_of_unpriced_models_leaves_costs_unknown(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    db = open_database(settings.sqlalchemy_url, settings.home)
    seed_two_days(db)
    result = report.build(db, settings, since=DAY1, project="alpha")
    (row,) = result.rows
    assert row.realtime_cost is None and row.batch_cost is None and row.savings is None
    assert row.measured_usd_per_mtok is None  # no hardware price
    assert row.tokens_per_second == pytest.approx(35.0)  # measured all the same


def test_worker_engine_time_and_tokens_reach_the_store(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    svc = service(settings, EchoEngine("echo", delay_seconds=0.01))
    lines = [chat_line(f"r{i}", f"say {i} twice", model="echo") for i in range(30)]
    batch_id = submit(svc, lines)
    record = asyncio.run(run_until(svc, batch_id, TERMINAL))
    assert record.status == "completed"
    recorder = UsageRecorder(svc.db, svc.engines.meter, every_seconds=60)
    asyncio.run(recorder.record())
    with svc.db.read() as conn:
        rows = usage.engine_usage_by_bucket(conn, since=0, bucket_seconds=86_400)
    batch_rows = [r for r in rows if r.kind == BATCH]
    assert sum(r.num_requests for r in batch_rows) == 30
    assert sum(r.output_tokens for r in batch_rows) == record.output_tokens
    assert sum(r.input_tokens for r in batch_rows) == record.input_tokens
    assert sum(r.seconds for r in batch_rows) > 0
    assert any(r.kind == IDLE for r in rows)
    asyncio.run(recorder.record())  # nothing new but time: adds to the same rows
    with svc.db.read() as conn:
        again = usage.engine_usage_by_bucket(conn, since=0, bucket_seconds=86_400)
    assert sum(r.num_requests for r in again if r.kind == BATCH) == 30
