"""Pure policies behind multi-tenancy: fair claims between projects, quota windows and
overrides, key redaction, upload names, loopback addresses."""

from __future__ import annotations

import logging

import pytest

from freight.api.uploads import safe_filename
from freight.cli.keys import is_loopback
from freight.config import QuotaLimits, QuotaSettings
from freight.errors import InvalidRequest, QuotaExceeded
from freight.service import access, quotas
from freight.worker.scheduler import RunnableBatch, fair_claims
from tests.waiting import ManualClock


def batch(batch_id: str, project: str, num_open: int, expires_at: int = 100) -> RunnableBatch:
    return RunnableBatch(batch_id, project, 0, expires_at, num_open)


def test_fair_claims_split_a_refill_equally_between_projects() -> None:
    plan = fair_claims([batch("a1", "a", 1_000_000), batch("b1", "b", 500)], 64)
    assert sorted(plan) == [("a1", 32), ("b1", 32)]


def test_what_one_project_cannot_use_goes_to_the_others() -> None:
    runnable = [batch("a1", "a", 5000), batch("b1", "b", 5), batch("c1", "c", 10)]
    assert dict(fair_claims(runnable, 60)) == {"a1": 45, "b1": 5, "c1": 10}


def test_a_projects_share_goes_to_its_batches_earliest_deadline_first() -> None:
    runnable = [
        batch("a-late", "a", 100, expires_at=300),
        batch("a-soon", "a", 10, expires_at=200),
        batch("b1", "b", 100),
    ]
    assert fair_claims(runnable, 40) == [("a-soon", 10), ("a-late", 10), ("b1", 20)]


def test_the_odd_claims_rotate_between_projects() -> None:
    runnable = [batch("a1", "a", 100), batch("b1", "b", 100), batch("c1", "c", 100)]
    firsts = {fair_claims(runnable, 4, turn)[0] for turn in range(3)}
    assert firsts == {("a1", 2), ("b1", 2), ("c1", 2)}  # each project gets the extra claim once
    assert sum(n for _, n in fair_claims(runnable, 4, 0)) == 4


def test_fair_claims_never_exceed_what_is_wanted_or_open() -> None:
    runnable = [batch("a1", "a", 3), batch("b1", "b", 2)]
    assert dict(fair_claims(runnable, 100)) == {"a1": 3, "b1": 2}
    assert fair_claims([], 10) == [] and fair_claims(runnable, 0) == []


def test_rate_quotas_refuse_within_the_window_and_pass_after_it() -> None:
    clock = ManualClock(1000.0)
    settings = QuotaSettings(window_seconds=60, default=QuotaLimits(requests_per_minute=2))
    q = quotas.Quotas(settings, clock)
    q.admit_realtime("p")
    q.admit_realtime("p")
    clock.advance(15)
    with pytest.raises(QuotaExceeded) as caught:
        q.admit_realtime("p")
    assert caught.value.retry_after == 45
    assert "requests_per_minute" in caught.value.message and "'p'" in caught.value.message
    q.admit_realtime("other")  # each project counts alone
    clock.advance(45)
    q.admit_realtime("p")


def test_token_quota_counts_what_requests_used() -> None:
    clock = ManualClock(1000.0)
    q = quotas.Quotas(QuotaSettings(default=QuotaLimits(tokens_per_minute=100)), clock)
    q.admit_realtime("p")
    q.record_tokens("p", 100)
    with pytest.raises(QuotaExceeded, match="tokens_per_minute"):
        q.admit_realtime("p")
    clock.advance(60)
    q.admit_realtime("p")


def test_project_overrides_replace_only_the_fields_they_set() -> None:
    settings = QuotaSettings(
        default=QuotaLimits(requests_per_minute=10, max_stored_bytes=1000),
        projects={"big": QuotaLimits(max_stored_bytes=10**9)},
    )
    assert settings.for_project("big") == QuotaLimits(
        requests_per_minute=10, max_stored_bytes=10**9
    )
    assert settings.for_project("small") == settings.default


def test_holding_quotas_count_what_is_held_plus_what_comes() -> None:
    q = quotas.Quotas(QuotaSettings(default=QuotaLimits(max_queued_requests=10)))
    q.check_queued("p", 5, 5)
    with pytest.raises(QuotaExceeded, match=r"holds 5 and this adds 6"):
        q.check_queued("p", 5, 6)


def test_keys_are_redacted_from_log_records(caplog: pytest.LogCaptureFixture) -> None:
    key = "frk_" + "A1b2" * 10
    record = logging.LogRecord("x", logging.INFO, "f", 1, "GET /v1?k=%s %s", (key, 401), None)
    access.RedactKeys().filter(record)
    assert record.getMessage() == f"GET /v1?k={key[:12]}... 401"
    assert access.redact(f"key={key}.") == f"key={key[:12]}...."


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../x.jsonl", "x.jsonl"),
        ("C:\\\\dir\\\\x.jsonl", "x.jsonl"),
        ("a\x00b\x1b\x7f.jsonl", "ab.jsonl"),
        ("evil\u202elmth.jsonl", "evillmth.jsonl"),
        ("line\u2028break.jsonl", "linebreak.jsonl"),
        ("  ..  ", "upload.jsonl"),
        ("", "upload.jsonl"),
        ("x" * 300, "x" * 255),
        ("résumé.jsonl", "résumé.jsonl"),
    ],
)
def test_safe_filename(sent: str, kept: str) -> None:
    assert safe_filename(sent) == kept


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_project_names_are_checked() -> None:
    assert access.check_project_name("team-a.prod_1") == "team-a.prod_1"
    for bad in ("", "../x", "a b", "-x", "x" * 65):
        with pytest.raises(InvalidRequest, match="Invalid project name"):
            access.check_project_name(bad)
