"""Every source file that Freight's docstrings and comments point a reader to exists."""

from __future__ import annotations

import re
from pathlib import Path

import freight

PACKAGE = Path(freight.__file__).parent
REPO = PACKAGE.parents[1]
# `worker/steps.py`, `(store/faults.py)`, `tests/fuzz/test_openapi.py`, `actor.py`
PY_NAME = re.compile(r"(?<![\w./])((?:[A-Za-z_][\w]*/)*[A-Za-z_]\w*\.py)\b")


def missing_references(path: Path) -> list[str]:
    """`name.py` paths named in `path` that are neither under the package, nor in the
    repository, nor beside `path` itself."""
    missing = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for name in PY_NAME.findall(line):
            if not any((base / name).is_file() for base in (PACKAGE, REPO, path.parent)):
                missing.append(f"{path.relative_to(REPO)}:{number}: {name}")
    return missing


def test_the_pattern_finds_paths_in_prose() -> None:
    line = "see worker/steps.py; (store/faults.py) and actor.py, not freight.py_thing"
    assert PY_NAME.findall(line) == ["worker/steps.py", "store/faults.py", "actor.py"]


def test_every_file_named_in_src_exists() -> None:
    missing = [m for path in sorted(PACKAGE.rglob("*.py")) for m in missing_references(path)]
    assert not missing, "stale references:\n" + "\n".join(missing)
