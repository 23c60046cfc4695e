"""Patterns that check user input match all of it: `$` lets a trailing newline through.

(A Message Batch `custom_id`: tests/unit/test_anthropic_protocol.py.)"""

from __future__ import annotations

import pytest

from freight import auth, submit
from freight.errors import InvalidRequest


def test_a_completion_window_with_a_trailing_newline_is_refused() -> None:
    assert submit.window_seconds("24h") == 86_400
    with pytest.raises(InvalidRequest) as raised:
        submit.window_seconds("24h\n")
    assert raised.value.param == "completion_window"


def test_a_project_name_with_a_trailing_newline_is_refused() -> None:
    assert auth.check_project_name("team-a") == "team-a"
    with pytest.raises(InvalidRequest) as raised:
        auth.check_project_name("team-a\n")
    assert raised.value.param == "project"
