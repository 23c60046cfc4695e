"""Configuration errors name their source (file and position, environment variable,
option) and the nearest valid key; unknown FREIGHT_* variables are errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from freight import config, config_errors
from freight.config import Settings
from freight.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
USED_NAME = re.compile(r"""["'](FREIGHT_[A-Z0-9_]+)["'=]|(?<![\w.])(FREIGHT_[A-Z0-9_]+)=""")
WRONG_ON_PURPOSE = {"test_config_errors.py", "test_cli_errors.py"}  # they test the errors


@pytest.fixture
def toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty freight.toml that config.load reads, in an environment without FREIGHT_*
    variables (a developer's own must not change these tests)."""
    for name in list(os.environ):
        if name.upper().startswith("FREIGHT_"):
            monkeypatch.delenv(name)
    path = tmp_path / "freight.toml"
    path.write_text("")
    monkeypatch.setenv("FREIGHT_CONFIG", str(path))
    return path


def load_error() -> str:
    with pytest.raises(ConfigError) as caught:
        config.load()
    return caught.value.message


def test_a_toml_syntax_error_names_the_file_line_and_column(toml: Path) -> None:
    toml.write_text('home = "h"\n\n[engine]\ndtype = float32\n')
    message = load_error()
    assert f"{toml}, line 4, column 9: Invalid value" in message
    assert "Traceback" not in message


def test_an_unknown_toml_key_names_the_file_and_the_nearest_key(toml: Path) -> None:
    toml.write_text("[engine]\ndtipe = 'float32'\n\n[worker]\nlease_secs = 5\n")
    message = load_error()
    assert f"{toml}: engine.dtipe: Extra inputs are not permitted; did you mean 'dtype'?" in (
        message
    )
    assert f"{toml}: worker.lease_secs: Extra inputs are not permitted; did you mean " in message
    toml.write_text("[[models]]\nname = 'e'\nengine = 'echo'\naliasses = ['x']\n")
    assert "models.0.aliasses: Extra inputs are not permitted; did you mean 'aliases'?" in (
        load_error()
    )
    toml.write_text("prot = 1\n")
    assert "prot: Extra inputs are not permitted; did you mean 'port'?" in load_error()


def test_a_bad_value_from_the_environment_names_the_variable_not_the_file(
    toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml.write_text("[engine]\nmax_num_seqs = 8\n")
    monkeypatch.setenv("FREIGHT_ENGINE__DTYPE", "float33")
    message = load_error()
    assert message.startswith("invalid configuration: FREIGHT_ENGINE__DTYPE: engine.dtype: ")
    assert str(toml) not in message
    monkeypatch.delenv("FREIGHT_ENGINE__DTYPE")
    monkeypatch.setenv("FREIGHT_ENGINE__DTYP", "float32")
    assert "did you mean FREIGHT_ENGINE__DTYPE?" in load_error()


def test_a_whole_list_from_the_environment_is_its_source(
    toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FREIGHT_MODELS", '[{"name": "e", "engine": "echo", "path": 3}]')
    assert load_error().startswith("invalid configuration: FREIGHT_MODELS: models.0.path: ")
    monkeypatch.setenv("FREIGHT_MODELS", '[{"name": "e", "engine": "echo", "aliasses": []}]')
    assert (
        "FREIGHT_MODELS: models.0.aliasses: Extra inputs are not permitted; did you mean "
        "'aliases'?" in load_error()
    )
    monkeypatch.setenv("FREIGHT_MODELS", "[not json")
    message = load_error()
    assert message.startswith("invalid configuration: FREIGHT_MODELS: not valid JSON")


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("FREIGHT_ENGINE_DTYPE", "did you mean FREIGHT_ENGINE__DTYPE?"),
        ("FREIGHT_HOEM", "did you mean FREIGHT_HOME?"),
        ("FREIGHT_CONFG", "did you mean FREIGHT_CONFIG?"),
        ("FREIGHT_FOO", "settings are FREIGHT_KEY or FREIGHT_SECTION__KEY"),
    ],
)
def test_an_unknown_freight_variable_is_an_error_naming_it_and_the_nearest(
    toml: Path, monkeypatch: pytest.MonkeyPatch, name: str, hint: str
) -> None:
    monkeypatch.setenv(name, "1")
    assert load_error() == f"invalid configuration: {name} is not a Freight setting; {hint}"


def test_variables_read_outside_the_settings_are_not_errors(
    toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in config_errors.OTHER_ENV_VARS:
        monkeypatch.setenv(name, "x" if name != "FREIGHT_CONFIG" else str(toml))
    monkeypatch.setenv("FREIGHT_QUOTAS__PROJECTS__TEAM__MAX_QUEUED_REQUESTS", "5")
    monkeypatch.setenv("FREIGHT_OPENAI_KEY", "sk-x")  # named by an upstream's api_key_env
    toml.write_text(
        "[[models]]\nname = 'up'\nengine = 'http'\n\n[models.upstream]\n"
        "base_url = 'http://upstream.invalid/v1'\napi_key_env = 'FREIGHT_OPENAI_KEY'\n"
    )
    settings = config.load()
    assert settings.quotas.for_project("team").max_queued_requests == 5
    toml.write_text("")
    assert "FREIGHT_OPENAI_KEY is not a Freight setting" in load_error()


def test_every_freight_variable_the_repository_reads_is_a_setting_or_allowed() -> None:
    """A variable that tests, benchmarks or examples set or read (FREIGHT_X= or "FREIGHT_X")
    must not make `freight` refuse to start: new ones go into OTHER_ENV_VARS."""
    names = set()
    for folder in ("src", "tests", "benchmarks", "examples"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name in WRONG_ON_PURPOSE:
                continue
            for quoted, assigned in USED_NAME.findall(path.read_text()):
                names.add(quoted or assigned)
    assert "FREIGHT_CHAOS_SEED" in names and "FREIGHT_ENGINE__DTYPE" in names  # the scan works
    unknown = config_errors.unknown_env_vars(Settings, dict.fromkeys(names, "x"))
    assert not unknown


def test_an_alias_may_not_be_another_models_name_or_alias(toml: Path) -> None:
    toml.write_text(
        "[[models]]\nname = 'a'\nengine = 'echo'\naliases = ['gpt-4o-mini']\n\n"
        "[[models]]\nname = 'b'\nengine = 'echo'\naliases = ['gpt-4o-mini']\n"
    )
    message = load_error()
    assert f"{toml}: models: " in message
    assert "the alias 'gpt-4o-mini' of model 'b' is already an alias of model 'a'" in message
    toml.write_text(
        "[[models]]\nname = 'a'\nengine = 'echo'\naliases = ['b']\n\n"
        "[[models]]\nname = 'b'\nengine = 'echo'\n"
    )
    assert "the alias 'b' of model 'a' is already the name of model 'b'" in load_error()
    toml.write_text("[[models]]\nname = 'a'\nengine = 'echo'\naliases = ['all-minilm-l6-v2']\n")
    assert "is already the built-in model 'all-minilm-l6-v2'" in load_error()


def test_options_given_on_the_command_line_are_named_as_options(toml: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid configuration: --port: port: "):
        config.load(port="eighty")
