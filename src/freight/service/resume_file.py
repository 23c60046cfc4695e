"""`freight run --resume` on a batch file: run only the custom_ids the output lacks.

The output's whole lines say which custom_ids are done (a line cut short when a run was
killed is removed first, as a table's --resume does: tables/formats.py); the input's
other lines are run and their results appended. A line of the input that is not JSON
with a string custom_id is kept, so validation reports it as it would without --resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from freight.errors import InvalidRequest
from freight.tables import formats


@dataclass(frozen=True)
class Remaining:
    """The input lines left to run, written to `path`."""

    path: Path
    num_lines: int
    num_skipped: int


def done_custom_ids(output: Path) -> set[str]:
    """The custom_ids of the whole lines in `output` (cut back to its last newline)."""
    formats.drop_cut_line(output)
    done: set[str] = set()
    with open(output, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                custom_id = json.loads(raw).get("custom_id")
            except (ValueError, AttributeError, RecursionError):
                custom_id = None
            if not isinstance(custom_id, str):
                raise InvalidRequest(
                    f"--resume: line {number} of {output} is not a result line with a "
                    "custom_id; resume into the output of an earlier `freight run` of this "
                    "file, or write elsewhere",
                    param="output",
                )
            done.add(custom_id)
    return done


def remaining(source: Path, done: set[str], target: Path) -> Remaining:
    """Copy the lines of `source` whose custom_id is not in `done` to `target`."""
    num_lines = num_skipped = 0
    with open(source, "rb") as src, open(target, "wb") as dst:
        for raw in src:
            try:
                custom_id = json.loads(raw).get("custom_id")
            except (ValueError, AttributeError, RecursionError):
                custom_id = None  # the validator says what is wrong with it
            if isinstance(custom_id, str) and custom_id in done:
                num_skipped += 1
                continue
            if not raw.strip():
                continue
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
            num_lines += 1
    return Remaining(target, num_lines, num_skipped)
