"""Batch-aware scheduling changes the order of work, never the results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import chat_line, run_cli, write_jsonl
from tests.sdk import batch_lines

pytestmark = pytest.mark.slow

OFF = {
    "FREIGHT_SCHEDULER__PREFIX_GROUPING": "false",
    "FREIGHT_SCHEDULER__LENGTH_AWARE": "false",
    "FREIGHT_SCHEDULER__DEDUPLICATE": "false",
}


def test_outputs_are_identical_with_every_optimisation_on_and_off(tmp_path: Path) -> None:
    """fp32 greedy decoding (the test engine) is batch-invariant, so any reordering or
    deduplication that changed an answer would show up here."""
    instruction = "Label the sentiment of the review as positive or negative. " * 8
    lines = []
    for i, review in enumerate(["Great value.", "Broke in a day.", "Love it!", "Awful."]):
        lines.append(chat_line(f"shared-{i}", review, max_tokens=4, temperature=0))
        lines[-1]["body"]["messages"].insert(0, {"role": "system", "content": instruction})
    for i in range(3):
        lines.append(chat_line(f"dup-{i}", "Name three colors.", max_tokens=12, temperature=0))
    lines.append(
        chat_line("long", "Write a short story about a cat.", max_tokens=48, temperature=0)
    )
    lines.append(chat_line("short", "Say hi.", max_tokens=2, temperature=0))
    path = write_jsonl(tmp_path / "in.jsonl", lines)

    outputs = {}
    for name, env in (("on", {}), ("off", OFF)):
        out = tmp_path / f"{name}.jsonl"
        done = run_cli("run", str(path), "-o", str(out), "--home", str(tmp_path / name), env=env)
        assert done.returncode == 0, done.stderr
        outputs[name] = {
            x["custom_id"]: x["response"]["body"]["choices"][0]["message"]["content"]
            for x in batch_lines(out.read_text())
        }
    assert outputs["on"] == outputs["off"]
    assert len(outputs["on"]) == len(lines)
    assert len({outputs["on"][f"dup-{i}"] for i in range(3)}) == 1
