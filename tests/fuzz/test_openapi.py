"""Schemathesis against Freight's own OpenAPI schema: every endpoint, generated requests.

Valid and invalid requests (path ids, query parameters, JSON bodies), generated from the
schema for each operation, go to the ASGI app in-process, with the zero-cost echo engine
behind the real-time routes. Every response must be a non-5xx whose status code, content
type and body the schema documents.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from freight.api.app import create_app
from freight.service import Service
from tests.conftest import make_settings

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]
NUM_EXAMPLES = 15  # per operation and generation mode


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_endpoint_answers_generated_requests_within_its_schema(
    tmp_path: Path, mode: GenerationMode
) -> None:
    svc = Service(make_settings(tmp_path / "home", default_model="echo"))
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(svc))
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 20  # files, batches, message batches, real time, models
        failures = []
        for operation in operations:
            if mode == GenerationMode.NEGATIVE and not _can_be_wrong(operation):
                continue

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=NUM_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=CHECKS)

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:  # every operation's findings
                failures.append(f"{operation.label}: {exc}")
        assert not failures, "\n\n".join(failures)
    finally:
        svc.db.dispose()


def _can_be_wrong(operation: schemathesis.APIOperation) -> bool:
    """Whether an operation has something an invalid request can get wrong: a body or
    query parameters (its only path parameters are free-form ids, which any string is)."""
    return bool(len(operation.query) or operation.body)
