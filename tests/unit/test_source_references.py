"""Every source file that Freight's docstrings and comments point a reader to exists."""

from __future__ import annotations

import re
from pathlib import Path

import freight

PACKAGE = Path(freight.__file__).parent
REPO = PACKAGE.parents[1]
# `worker/steps.py`, `(store/faults.py)`, `tests/fuzz/test_openapi.py`, `actor.py`; a path
# may wrap after a slash onto the next line of its docstring or comment.
PY_NAME = re.compile(r"(?<![\w./])((?:[A-Za-z_]\w*/(?:\n[ \t]*(?:#[ \t]*)?)?)*[A-Za-z_]\w*\.py)\b")
_WRAP = re.compile(r"\n[ \t]*(?:#[ \t]*)?")


def py_names(text: str) -> list[tuple[int, str]]:
    """(line, path) of every `name.py` path in `text`, wrapped ones joined."""
    return [
        (text.count("\n", 0, m.start()) + 1, _WRAP.sub("", m.group(1)))
        for m in PY_NAME.finditer(text)
    ]


def missing_references(path: Path) -> list[str]:
    """`name.py` paths named in `path` that are neither under the package, nor in the
    repository, nor beside `path` itself."""
    return [
        f"{path.relative_to(REPO)}:{number}: {name}"
        for number, name in py_names(path.read_text(encoding="utf-8"))
        if not any((base / name).is_file() for base in (PACKAGE, REPO, path.parent))
    ]


def test_the_pattern_finds_paths_in_prose_wrapped_or_not() -> None:
    text = "see worker/steps.py; (store/\n    faults.py) and actor.py,\n# not freight.py_thing"
    assert py_names(text) == [(1, "worker/steps.py"), (1, "store/faults.py"), (2, "actor.py")]
    assert py_names("# a comment (store/\n    # blobs.py)") == [(1, "store/blobs.py")]


def test_every_file_named_in_src_exists() -> None:
    missing = [m for path in sorted(PACKAGE.rglob("*.py")) for m in missing_references(path)]
    assert not missing, "stale references:\n" + "\n".join(missing)
