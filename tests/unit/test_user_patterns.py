"""Patterns that check user input match all of it: `$` lets a trailing newline through.

(A Message Batch `custom_id`: tests/unit/test_anthropic_protocol.py.)"""

from __future__ import annotations

import pytest

from freight.errors import InvalidRequest
from freight.service import access, intake


def test_a_completion_window_with_a_trailing_newline_is_refused() -> None:
    assert intake.window_seconds("24h") == 86_400
    with pytest.raises(InvalidRequest) as raised:
        intake.window_seconds("24h\n")
    assert raised.value.param == "completion_window"


def test_a_project_name_with_a_trailing_newline_is_refused() -> None:
    assert access.check_project_name("team-a") == "team-a"
    with pytest.raises(InvalidRequest) as raised:
        access.check_project_name("team-a\n")
    assert raised.value.param == "project"
