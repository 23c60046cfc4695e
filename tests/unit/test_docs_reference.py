"""The docs site's reference pages are generated from the settings and the commands, and
committed: a key or command added without a description, or without `make docs`, fails here.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.core
import typer.main
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from freight import config
from freight.cli import main as cli_main
from tests.conftest import REPO


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reference", REPO / "docs" / "gen_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gen_reference = load_generator()


def section(page: str, heading: str) -> str:
    """The text of the `## heading` section (up to the next heading of any level 2-4)."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#{{2,4}} |\Z)", page, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


@pytest.mark.parametrize("page", ["configuration.md", "cli.md"])
def test_the_committed_reference_page_is_what_the_generator_writes(page: str) -> None:
    path = REPO / "docs" / "reference" / page
    assert path.read_text(encoding="utf-8") == gen_reference.pages()[path], (
        f"docs/reference/{page} differs from the code: run `make docs` "
        "(python docs/gen_reference.py) and commit the page"
    )


def test_the_generator_check_mode_passes_on_the_committed_pages() -> None:
    assert gen_reference.main(["--check"]) == 0


# Walked here on their own, not with the generator's walk, so that a key the generator
# skipped shows up as missing from the page.
def settings_keys(
    model: type[BaseModel], dotted: str, heading: str
) -> Iterator[tuple[str, str, FieldInfo]]:
    """(table heading as in freight.toml, key, field) of every key that holds a value."""
    for name, field in model.model_fields.items():
        path = f"{dotted}.{name}" if dotted else name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from settings_keys(annotation, path, f"[{path}]")
        elif model is config.Settings and name == "models":
            yield from settings_keys(config.ModelSettings, path, f"[[{path}]]")
        elif model is config.ModelSettings and name == "upstream":
            for style in (
                config.HTTPUpstream,
                config.OpenAIBatchUpstream,
                config.AnthropicBatchUpstream,
            ):
                engine = style.model_fields["engine"].default
                yield from settings_keys(style, path, f'[{path}] for engine = "{engine}"')
        elif model is config.QuotaSettings and name == "projects":
            yield from settings_keys(config.QuotaLimits, f"{path}.NAME", f"[{path}.NAME]")
        else:
            yield heading, name, field


def all_settings_keys() -> list[tuple[str, str, Any]]:
    return list(settings_keys(config.Settings, "", ""))


def test_the_walk_finds_the_keys_of_every_table() -> None:
    headings = {heading for heading, _, _ in all_settings_keys()}
    assert {"", "[engine]", "[[models]]", "[quotas.default]", "[quotas.projects.NAME]"} <= headings
    assert '[models.upstream] for engine = "openai-batch"' in headings
    assert len(all_settings_keys()) > 100


def test_every_settings_key_has_a_description() -> None:
    undocumented = [
        f"{heading or 'top level'} {key}"
        for heading, key, field in all_settings_keys()
        if not (field.description or "").strip()
    ]
    assert undocumented == [], "add Field(description=...) in src/freight/config.py"


def test_every_settings_key_is_in_the_configuration_reference() -> None:
    page = (REPO / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    missing = []
    for heading, key, _ in all_settings_keys():
        text = section(page, "Top level" if not heading else f"`{heading}`")
        if f"| `{key}` |" not in text:
            missing.append(f"{heading} {key}")
    assert missing == []


def test_the_reference_names_each_keys_environment_variable() -> None:
    page = (REPO / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert "| `port` | integer | `8000` |" in page and "`FREIGHT_PORT` |" in page
    engine = section(page, "`[engine]`")
    assert "`FREIGHT_ENGINE__ENFORCE_EAGER` |" in engine
    assert "`FREIGHT_QUOTAS__PROJECTS__NAME__REQUESTS_PER_MINUTE` |" in page
    assert "FREIGHT_MODELS" in section(page, "`[[models]]`")


def test_the_environment_variables_the_reference_names_set_their_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FREIGHT_CONFIG", str(tmp_path / "absent.toml"))
    names = {key.env for table in gen_reference.settings_tables() for key in table.keys}
    chosen = {
        "FREIGHT_PORT": "9001",
        "FREIGHT_ENGINE__SEED": "7",
        "FREIGHT_SCHEDULER__DEDUPLICATE": "false",
        "FREIGHT_QUOTAS__DEFAULT__MAX_QUEUED_REQUESTS": "5",
    }
    assert set(chosen) <= names
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FREIGHT_QUOTAS__PROJECTS__INTERNS__REQUESTS_PER_MINUTE", "60")
    settings = config.load()
    assert (settings.port, settings.engine.seed, settings.scheduler.deduplicate) == (9001, 7, False)
    assert settings.quotas.for_project("interns").requests_per_minute == 60
    assert settings.quotas.for_project("interns").max_queued_requests == 5


def command_tree() -> Iterator[tuple[str, Any]]:
    """(path, command) of every `freight` command, groups included."""
    root = typer.main.get_command(cli_main.app)
    stack: list[tuple[str, Any]] = [("freight", root)]
    while stack:
        path, command = stack.pop()
        yield path, command
        if isinstance(command, typer.core.TyperGroup):
            stack += [(f"{path} {name}", sub) for name, sub in command.commands.items()]


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    page = (REPO / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    commands = dict(command_tree())
    assert {"freight serve", "freight run", "freight batches wait", "freight webhooks add"} <= set(
        commands
    )
    missing = []
    for path, command in commands.items():
        text = section(page, f"`{path}`")
        if command.help and command.help.split("\n", 1)[0] not in text:
            missing.append(f"{path}: its help")
        for param in command.params:
            for name in [*param.opts, *param.secondary_opts]:
                if param.param_type_name == "option" and name not in text:
                    missing.append(f"{path} {name}")
    assert missing == []


def test_every_command_has_help() -> None:
    assert [path for path, command in command_tree() if not (command.help or "").strip()] == []
