"""Batch and request statuses are named once (store/statuses.py) and agree with the store.

The enums must hold exactly the statuses the store's lifecycle uses, the OpenAI wire
model must offer the same batch statuses, and no module may spell a status as a bare
string again: a scan of src/ finds every string literal equal to a status, outside the
enum module, and only the few listed below (other vocabularies that share a word) may
remain.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import freight
from freight.protocol import openai_wire, views
from freight.store import batch_requests, batches
from freight.store.schema import batches as batches_table
from freight.store.statuses import BatchStatus, RequestStatus

SRC = Path(freight.__file__).parent
STATUS_WORDS = {s.value for s in BatchStatus} | {s.value for s in RequestStatus}

# Words other vocabularies share with the statuses, by module: {path: {word: why}}.
OTHER_VOCABULARIES: dict[str, dict[str, str]] = {
    "protocol/openai_wire.py": dict.fromkeys(
        [s.value for s in BatchStatus], "the wire model's Literal (checked equal below)"
    ),
    "protocol/anthropic_wire.py": {"in_progress": "Anthropic processing_status"},
    "protocol/views.py": {"in_progress": "Anthropic processing_status"},
    "protocol/responses_api.py": dict.fromkeys(
        ["in_progress", "completed", "failed"], "Responses API response/item status"
    ),
    "protocol/webhook_wire.py": {"failed": "webhook delivery status"},
    "store/webhook_store.py": {"failed": "webhook delivery status"},
    "worker/finalize.py": {"errored": "Anthropic result type"},
    "upstream/provider_batches.py": {
        "in_progress": "Anthropic processing_status",
        "succeeded": "Anthropic result type",
        "expired": "Anthropic result type",
    },
    "upstream/passthrough.py": {"failed": "an upstream batch's upstream_status note"},
    "engines/http_engine.py": {"succeeded": "upstream call outcome (metrics label)"},
    "cli/keys.py": {"expired": "API key state"},
    "cli/client.py": {"failed": "column heading (request_counts.failed)"},
}


def status_literals(source: str) -> list[tuple[int, str]]:
    """(line, word) of each string literal in `source` that equals a status.

    Not counted: docstrings and other bare string statements, keys in subscripts
    (`counts["completed"]` names a field), attribute names given to getattr/hasattr,
    and the pieces of f-strings.
    """
    tree = ast.parse(source)
    ignored: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ignored.add(id(node.value))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            ignored.add(id(node.slice))
        elif isinstance(node, ast.JoinedStr):
            ignored.update(id(v) for v in node.values)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
        ):
            ignored.add(id(node.args[1]))
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in STATUS_WORDS
        and id(node) not in ignored
    )


def test_batch_statuses_are_exactly_those_of_the_transition_table() -> None:
    in_table = set(batches.ALLOWED) | set().union(*batches.ALLOWED.values())
    assert in_table == set(BatchStatus)
    assert set(batches.ALLOWED) == batches.ACTIVE  # a status with a way out is not an end
    assert set(BatchStatus) - set(batches.ALLOWED) == batches.TERMINAL
    assert not batches.ACTIVE & batches.TERMINAL


def test_every_status_a_batch_moves_to_has_its_timestamp_column() -> None:
    targets = set().union(*batches.ALLOWED.values())
    missing = {s for s in targets if f"{s}_at" not in batches_table.c}
    assert not missing


def test_request_statuses_are_exactly_the_open_and_finished_ones() -> None:
    assert set(batch_requests.OPEN) | set(batch_requests.FINISHED) == set(RequestStatus)
    assert not set(batch_requests.OPEN) & set(batch_requests.FINISHED)
    # each finished status adds to the batch's counter of the same name
    assert all(f"num_{s}" in batches_table.c for s in batch_requests.FINISHED)


def test_statuses_are_their_stored_strings() -> None:
    assert BatchStatus.IN_PROGRESS == "in_progress"
    assert f"{BatchStatus.CANCELLED}_at" == "cancelled_at"
    assert BatchStatus("finalizing") is BatchStatus.FINALIZING
    assert RequestStatus("queued") is RequestStatus.QUEUED


def test_the_openai_wire_model_offers_exactly_the_batch_statuses() -> None:
    offered = typing.get_args(openai_wire.Batch.model_fields["status"].annotation)
    assert set(offered) == {s.value for s in BatchStatus}


def test_every_active_batch_status_has_an_anthropic_processing_status() -> None:
    assert set(views._PROCESSING_STATUS) == batches.ACTIVE


def test_the_scan_finds_status_literals_and_skips_what_is_no_status() -> None:
    source = (
        '"""Moves a batch to "completed"."""\n'
        'if batch.status == "in_progress":\n'
        '    batches.transition(conn, batch.id, "finalizing")\n'
        'num = counts["failed"] + len(f"{x}failed")\n'
        'broken = getattr(llm, "errored", False)\n'
    )
    assert status_literals(source) == [(2, "in_progress"), (3, "finalizing")]


def test_no_bare_status_literal_is_left_in_src() -> None:
    found: dict[str, set[str]] = {}
    unexpected: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name == "store/statuses.py":
            continue
        allowed = OTHER_VOCABULARIES.get(name, {})
        for line, word in status_literals(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(word)
            if word not in allowed:
                unexpected.append(f"src/freight/{name}:{line}: {word!r}")
    assert not unexpected, "use BatchStatus / RequestStatus:\n" + "\n".join(unexpected)
    stale = {
        f"{name}: {word}"
        for name, words in OTHER_VOCABULARIES.items()
        for word in words
        if word not in found.get(name, set())
    }
    assert not stale, f"allowed literals no longer used (drop them from the list): {stale}"
