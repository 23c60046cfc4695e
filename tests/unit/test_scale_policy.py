"""Small policies of scaling out: which batches go to Ray, and `--ray` with or without a value."""

from __future__ import annotations

import pytest

from freight.cli.main import optional_value
from freight.cluster.handoff import is_large


@pytest.mark.parametrize(
    ("num_open", "min_requests", "expected"),
    [(0, 0, False), (1, 0, True), (99, 100, False), (100, 100, True), (5000, 100, True)],
)
def test_a_batch_goes_to_ray_from_min_requests_open_requests(
    num_open: int, min_requests: int, expected: bool
) -> None:
    assert is_large(num_open, min_requests) is expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "in.jsonl", "-o", "o", "--ray"], ["run", "in.jsonl", "-o", "o", "--ray=local"]),
        (["run", "in.jsonl", "--ray", "-o", "o"], ["run", "in.jsonl", "--ray=local", "-o", "o"]),
        (
            ["run", "in.jsonl", "--ray", "auto", "-o", "o"],
            ["run", "in.jsonl", "--ray", "auto", "-o", "o"],
        ),
        (["run", "in.jsonl", "--ray=10.0.0.1:6379"], ["run", "in.jsonl", "--ray=10.0.0.1:6379"]),
        (["run", "in.jsonl", "-o", "o"], ["run", "in.jsonl", "-o", "o"]),
    ],
)
def test_ray_alone_means_a_local_cluster_and_takes_an_address_otherwise(
    argv: list[str], expected: list[str]
) -> None:
    assert optional_value(argv, "--ray", "local") == expected
