"""Every TOML example in the README and the docs loads as written, as a freight.toml."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from freight import config
from tests.conftest import REPO

# A fence may be indented (inside a list item); its closing fence has the same indent.
TOML_FENCE = re.compile(r"^( *)```toml\n(.*?)^\1```", re.M | re.S)


def toml_examples() -> list[tuple[str, str]]:
    """(where, text) of every ```toml block: file and line number, the block dedented."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    examples = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for match in TOML_FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(REPO)}:{line}"
            examples.append((where, textwrap.dedent(match.group(2))))
    return examples


EXAMPLES = toml_examples()


def test_the_examples_are_found_in_the_readme_and_the_guides() -> None:
    places = {where.split(":")[0] for where, _ in EXAMPLES}
    assert {"README.md", "docs/guides/configuration.md", "docs/guides/models.md"} <= places
    assert len(EXAMPLES) >= 12


def test_an_indented_example_is_found_and_dedented() -> None:
    text = "- item\n\n  ```toml\n  [engine]\n  seed = 1\n  ```\n"
    (match,) = TOML_FENCE.finditer(text)
    assert tomllib.loads(textwrap.dedent(match.group(2))) == {"engine": {"seed": 1}}


@pytest.mark.parametrize(("where", "text"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_the_example_loads_as_a_freight_toml(
    where: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{where}: not TOML: {exc}")
    path = tmp_path / "freight.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("FREIGHT_CONFIG", str(path))
    config.load()  # a ConfigError names the key and what is wrong
