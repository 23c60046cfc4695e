"""Schemathesis against Freight's own OpenAPI schema: every endpoint, generated requests.

Valid and invalid requests (path ids, query parameters, JSON bodies), generated from the
schema for each operation, go to the ASGI app in-process, with the zero-cost echo engine
behind the real-time routes. Every response must be a non-5xx whose status code, content
type and body the schema documents.

Routes that act on an object get, in about half of their examples, the id of a real one
(a file, a batch, a Message Batch, a webhook endpoint, made before fuzzing), so that their
handlers run past the lookup instead of answering every generated id with a 404; deletes
run last. The Message Batch body and the webhook inputs are documented as strictly as
they are checked (api/openapi.py), so that valid examples are accepted and reach the
store. Webhook URLs are generated on loopback, to a closed port, so that
`/v1/webhook_endpoints/{id}/test` never reaches out of the machine.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks
from schemathesis.specs.openapi.formats import unregister_string_format
from starlette.testclient import TestClient

from freight.app import create_app
from freight.config import WebhookSettings
from freight.service.runtime import Service
from tests.conftest import make_settings

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]
NUM_EXAMPLES = 15  # per operation and generation mode
LOOPBACK_URLS = st.builds(
    "http://127.0.0.1:9/{}".format, st.text(alphabet="abcdefghij0123456789-_/", max_size=20)
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_endpoint_answers_generated_requests_within_its_schema(
    tmp_path: Path, mode: GenerationMode
) -> None:
    # No worker: the API is what is fuzzed, and a background task drawing on `random`
    # (retry jitter) while hypothesis generates makes hypothesis call the run flaky.
    # Webhook URLs point at a closed loopback port, which must be allow-listed to be accepted.
    freight_settings = make_settings(
        tmp_path / "home",
        default_model="echo",
        webhooks=WebhookSettings(allow_hosts=["127.0.0.1"]),
    )
    svc = Service(freight_settings, with_worker=False)
    schemathesis.openapi.format("uri", LOOPBACK_URLS)
    try:
        app = create_app(svc)
        ids = _seed(TestClient(app))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 20  # files, batches, message batches, real time, models
        assert {"/v1/messages/batches/{message_batch_id}/results", "/v1/webhook_endpoints"} <= {
            op.path for op in operations
        }
        operations.sort(key=lambda op: op.method.lower() == "delete")
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
                if case.path_parameters and _half(case.path_parameters):
                    case.path_parameters = {
                        name: ids.get(name, value) for name, value in case.path_parameters.items()
                    }
                case.call_and_validate(checks=CHECKS)

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:  # every operation's findings
                failures.append(f"{operation.label}: {exc}")
        assert not failures, "\n\n".join(failures)
    finally:
        unregister_string_format("uri")
        svc.db.dispose()


def _seed(client: TestClient) -> dict[str, str]:
    """One object of each kind a path parameter names, by its parameter's name."""
    line = {
        "custom_id": "seed",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    }
    uploaded = client.post(
        "/v1/files",
        files={"file": ("in.jsonl", json.dumps(line).encode() + b"\n")},
        data={"purpose": "batch"},
    )
    batch = client.post(
        "/v1/batches",
        json={
            "input_file_id": _id(uploaded),
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    params = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    message_batch = client.post(
        "/v1/messages/batches", json={"requests": [{"custom_id": "seed", "params": params}]}
    )
    endpoint = client.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook"})
    return {
        "file_id": _id(uploaded),
        "batch_id": _id(batch),
        "message_batch_id": _id(message_batch),
        "endpoint_id": _id(endpoint),
        "model": "echo",
    }


def _half(path_parameters: dict[str, Any]) -> bool:
    """True for about half of the generated ids, the same on every replay of an example (a
    separately drawn boolean would make schemathesis' generation flaky)."""
    return zlib.crc32(repr(sorted(path_parameters.items())).encode()) % 2 == 0


def _id(response: Any) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _can_be_wrong(operation: schemathesis.APIOperation) -> bool:
    """Whether an operation has something an invalid request can get wrong: a body or
    query parameters (its only path parameters are free-form ids, which any string is)."""
    return bool(len(operation.query) or operation.body)
