"""The package layout's rules that import-linter does not check (it checks the layers:
pyproject.toml, `make lint`): module names and private names."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "freight"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def shadowed_library(stem: str) -> str | None:
    """The library a module named `stem` would be mistaken for, if any."""
    if stem in sys.stdlib_module_names:
        return f"the standard library's {stem}"
    spec = importlib.util.find_spec(stem)
    if spec is not None and PACKAGE not in Path(spec.origin or "").parents:
        return f"the installed package {stem}"
    return None


def private_imports(own: str, source: str) -> list[str]:
    """`from freight.x import _name` in module `own`, where freight.x is another module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("freight"):
            continue
        if node.module == own:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{own}:{node.lineno}: {node.module}.{alias.name}")
    return found


def test_no_module_is_named_like_a_library_it_could_shadow() -> None:
    clashes = [
        f"{path.relative_to(SRC)}: {library}"
        for path in modules()
        if not path.stem.startswith("_") and not path.stem[0].isdigit()
        if (library := shadowed_library(path.stem)) is not None
    ]
    assert not clashes, "rename these modules:\n" + "\n".join(clashes)


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [
        line for path in modules() for line in private_imports(module_name(path), path.read_text())
    ]
    assert not found, "make these names public or keep them in their module:\n" + "\n".join(found)


def test_the_checks_find_what_they_look_for() -> None:
    source = "from freight.store.batch_requests import _hidden, public\n"
    assert private_imports("freight.worker.scratch", source) == [
        "freight.worker.scratch:1: freight.store.batch_requests._hidden"
    ]
    assert private_imports("freight.store.batch_requests", source) == []
    assert shadowed_library("json") == "the standard library's json"
    assert shadowed_library("httpx") == "the installed package httpx"
    assert shadowed_library("dispatcher_of_freight") is None
