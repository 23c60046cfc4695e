"""Batch-aware scheduling changes the order of work, never the results."""

from __future__ import annotations

from pathlib import Path

import pytest

from freight.config import SchedulerSettings
from tests.conftest import LiveServer, chat_line, make_settings, run_offline, write_jsonl
from tests.sdk import batch_lines

pytestmark = pytest.mark.slow

OFF = SchedulerSettings(prefix_grouping=False, length_aware=False, deduplicate=False)


def test_outputs_are_identical_with_every_optimisation_on_and_off(
    real_server: LiveServer, tmp_path: Path
) -> None:
    """fp32 greedy decoding (the test engine) is batch-invariant, so any reordering or
    deduplication that changed an answer would show up here. Both runs are `freight run`
    on the session's engine."""
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
    for name, scheduler in (("on", SchedulerSettings()), ("off", OFF)):
        out = tmp_path / f"{name}.jsonl"
        settings = make_settings(tmp_path / name, scheduler=scheduler)
        assert run_offline(real_server, settings, path, out)[0] == 0
        outputs[name] = {
            x["custom_id"]: x["response"]["body"]["choices"][0]["message"]["content"]
            for x in batch_lines(out.read_text())
        }
    assert outputs["on"] == outputs["off"]
    assert len(outputs["on"]) == len(lines)
    assert len({outputs["on"][f"dup-{i}"] for i in range(3)}) == 1
