"""Small policies of scaling out: which batches go to Ray (`freight run --ray`: test_cli_errors)."""

from __future__ import annotations

import pytest

from freight.cluster.handoff import is_large


@pytest.mark.parametrize(
    ("num_open", "min_requests", "expected"),
    [(0, 0, False), (1, 0, True), (99, 100, False), (100, 100, True), (5000, 100, True)],
)
def test_a_batch_goes_to_ray_from_min_requests_open_requests(
    num_open: int, min_requests: int, expected: bool
) -> None:
    assert is_large(num_open, min_requests) is expected
