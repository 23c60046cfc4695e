"""worker/unqueued.py `iter_custom_ids`: the custom_ids of a Message Batch body, and nothing
else, from one flat pass that the depth or size of the `params` cannot break."""

from __future__ import annotations

import io
import json

from freight.worker.unqueued import iter_custom_ids


def custom_ids(body: bytes) -> list[str]:
    return list(iter_custom_ids(io.BytesIO(body)))


def test_custom_ids_come_in_order_whatever_the_params_hold() -> None:
    params = {"model": "m", "custom_id": "inner", "metadata": {"custom_id": "deeper"}}
    body = {
        "requests": [
            {"params": params, "custom_id": "second-key"},
            {"custom_id": "b", "params": {"messages": [{"custom_id": "in-a-list"}]}},
            {"custom_id": "c", "params": {}},
        ]
    }
    assert custom_ids(json.dumps(body).encode()) == ["second-key", "b", "c"]


def test_params_nested_far_deeper_than_pythons_recursion_limit_are_passed_over() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    first = b'{"custom_id":"a","params":{"x":' + deep + b"}}"
    body = b'{"requests":[' + first + b',{"custom_id":"b","params":{}}]}'
    assert custom_ids(body) == ["a", "b"]


def test_a_body_without_requests_has_no_custom_ids() -> None:
    assert custom_ids(b'{"other": [{"custom_id": "x"}]}') == []
