"""The batch page's view of work in flight: its latest answers, as they land (a Freight
extension: store/result_order.py). The retry button's route is in web/pages.py."""

from __future__ import annotations

import json
from typing import Any

from freight.store import result_order

NUM_LATEST = 5
EXCERPT_CHARS = 200


def latest_answers(conn: Any, batch_id: str) -> list[dict[str, str]]:
    """The batch's last few finished lines, each its custom_id, status and what it said."""
    return [
        {"custom_id": row.custom_id, "status": row.status, "text": _excerpt(row)}
        for row in result_order.latest(conn, batch_id, NUM_LATEST)
    ]


def _excerpt(row: Any) -> str:
    """The answer's text (chat, completion, message), else the error's message, shortened."""
    try:
        body = json.loads(row.response_json or row.error_json or "{}")
    except ValueError:
        return (row.response_json or row.error_json or "")[:EXCERPT_CHARS]
    text: Any = None
    if isinstance(body, dict):
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            message = first.get("message")
            text = message.get("content") if isinstance(message, dict) else first.get("text")
        elif isinstance(body.get("error"), dict):
            text = body["error"].get("message")
        elif isinstance(body.get("content"), list):  # an Anthropic message
            text = " ".join(
                str(block.get("text", "")) for block in body["content"] if isinstance(block, dict)
            )
        elif "message" in body:
            text = body.get("message")
    shown = text if isinstance(text, str) else json.dumps(body, ensure_ascii=False)
    return shown[:EXCERPT_CHARS] + ("…" if len(shown) > EXCERPT_CHARS else "")
