"""`freight`'s errors as a user meets them: each names its source and says what to do
next, with the exit code of the one table (freight.cli.main, docs/cli-errors.md).

In process (typer's CliRunner): a `freight` subprocess costs a second per call; the
subprocess path itself is test_cli's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from freight import __version__
from freight.cli import main
from freight.cli import run as run_command
from freight.service import batch_client
from freight.store.db import open_database
from tests.conftest import LiveServer, chat_line, free_port, write_jsonl
from tests.sdk import batch_lines


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder (not created), in an environment without FREIGHT_* variables; what
    the commands set there (--home sets FREIGHT_HOME) is undone after the test."""
    for name in list(os.environ):
        if name.upper().startswith("FREIGHT_"):
            monkeypatch.delenv(name)
    path = tmp_path / "home"
    monkeypatch.setenv("FREIGHT_HOME", str(path))
    return path


def with_store(home: Path) -> Path:
    open_database(f"sqlite:///{(home / 'freight.db').resolve()}", home).dispose()
    return home


def freight(*args: str) -> Result:
    return CliRunner().invoke(main.app, list(args))


def test_version_prints_the_version() -> None:
    done = freight("--version")
    assert done.exit_code == 0 and done.stdout == f"freight {__version__}\n"


def test_a_malformed_freight_toml_names_file_line_and_column_and_exits_2(home: Path) -> None:
    with_store(home)
    (home / "freight.toml").write_text("[engine]\ndtype = 'float32'\nmax_num_seqs = \n")
    done = freight("keys", "list", "--home", str(home))
    assert done.exit_code == 2
    assert f"error: invalid configuration: {home}/freight.toml, line 3, column 16: " in (
        done.stderr
    )
    assert "Traceback" not in done.output and len(done.stderr.splitlines()) == 1


def test_a_setting_from_the_environment_is_named_by_its_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_store(home)
    monkeypatch.setenv("FREIGHT_ENGINE__DTYPE", "float33")
    done = freight("report", "--home", str(home))
    assert done.exit_code == 2
    assert "error: invalid configuration: FREIGHT_ENGINE__DTYPE: engine.dtype: " in done.stderr
    assert "freight.toml" not in done.stderr


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("FREIGHT_ENGINE_DTYPE", "did you mean FREIGHT_ENGINE__DTYPE?"),
        ("FREIGHT_FOO", "settings are FREIGHT_KEY or FREIGHT_SECTION__KEY"),
    ],
)
def test_an_unknown_freight_variable_is_an_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, name: str, hint: str
) -> None:
    with_store(home)
    monkeypatch.setenv(name, "float32")
    done = freight("keys", "list", "--home", str(home))
    assert done.exit_code == 2
    assert f"{name} is not a Freight setting; {hint}" in done.stderr


def test_an_unknown_config_key_gets_the_nearest_valid_one(home: Path) -> None:
    with_store(home)
    (home / "freight.toml").write_text("[worker]\nmax_atempts = 5\n")
    done = freight("webhooks", "list", "--home", str(home))
    assert done.exit_code == 2
    assert f"{home}/freight.toml: worker.max_atempts: " in done.stderr
    assert "did you mean 'max_attempts'?" in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "list"],
        ["keys", "revoke", "frk_x"],
        ["webhooks", "list"],
        ["webhooks", "remove", "we_x"],
        ["webhooks", "deliveries"],
        ["report"],
    ],
)
def test_store_commands_refuse_a_home_without_a_store(home: Path, command: list[str]) -> None:
    done = freight(*command, "--home", str(home / "typo"))
    assert done.exit_code == 2
    assert f"{(home / 'typo').resolve()} holds no Freight store" in done.stderr
    assert f"freight serve --home {(home / 'typo').resolve()}" in done.stderr
    assert not (home / "typo" / "freight.db").exists()


def test_keys_create_makes_the_store_of_a_new_home_and_says_so(home: Path) -> None:
    done = freight("keys", "create", "--project", "alpha", "--home", str(home))
    assert done.exit_code == 0, done.output
    assert f"Created a new Freight store in {home.resolve()}." in done.stderr
    listed = freight("keys", "list", "--json", "--home", str(home))
    assert listed.exit_code == 0 and '"project": "alpha"' in listed.stdout


def test_unknown_ids_exit_2_for_keys_and_webhooks_alike(home: Path) -> None:
    with_store(home)
    revoked = freight("keys", "revoke", "frk_nothere", "--home", str(home))
    removed = freight("webhooks", "remove", "we_nothere", "--home", str(home))
    assert (revoked.exit_code, removed.exit_code) == (2, 2)
    assert "frk_nothere" in revoked.stderr and "we_nothere" in removed.stderr


def test_an_unreachable_server_says_how_to_start_or_find_it(home: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    done = freight("batches", "list", "--base-url", base_url)
    assert done.exit_code == 1
    assert f"cannot reach Freight at {base_url}" in done.stderr
    assert "`freight serve`" in done.stderr and "--base-url" in done.stderr


def test_a_401_says_how_to_pass_a_key(echo_server: LiveServer, home: Path) -> None:
    _, key = echo_server.svc.keys.create("alpha")
    base_url = f"{echo_server.base_url}/v1"
    done = freight("files", "list", "--base-url", base_url)
    assert done.exit_code == 2
    assert "HTTP 401: " in done.stderr and "--api-key or $FREIGHT_API_KEY" in done.stderr
    assert freight("files", "list", "--base-url", base_url, "--api-key", key).exit_code == 0


@pytest.mark.parametrize(
    ("status", "code"), [(400, 2), (404, 2), (409, 2), (429, 1), (500, 1), (503, 1)]
)
def test_server_answers_map_to_the_exit_code_table(
    home: Path, monkeypatch: pytest.MonkeyPatch, status: int, code: int
) -> None:
    def answer(method: str, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": "told so"}})

    monkeypatch.setattr(batch_client.httpx, "request", answer)
    done = freight("batches", "get", "batch_x")
    assert done.exit_code == code and f"HTTP {status}: told so" in done.stderr


def test_batches_wait_keeps_error_lines_in_the_output_as_freight_run_does(
    echo_server: LiveServer, home: Path, tmp_path: Path
) -> None:
    sdk = echo_server.openai()
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [chat_line("ok", "hi", model="echo"), chat_line("bad", "hi", model="echo", max_tokens=0)],
    )
    uploaded = sdk.files.create(file=path, purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    base = ["--base-url", f"{echo_server.base_url}/v1", "--interval", "0.05"]
    done = freight("batches", "wait", batch.id, "-o", str(tmp_path / "out.jsonl"), *base)
    assert done.exit_code == 3, done.output
    lines = batch_lines((tmp_path / "out.jsonl").read_text())
    assert [(x["custom_id"], x["response"]["status_code"]) for x in lines] == [
        ("ok", 200),
        ("bad", 400),
    ]
    split = freight(
        "batches",
        "wait",
        batch.id,
        "-o",
        str(tmp_path / "ok.jsonl"),
        "--errors",
        str(tmp_path / "err.jsonl"),
        *base,
    )
    assert split.exit_code == 3
    assert [x["custom_id"] for x in batch_lines((tmp_path / "ok.jsonl").read_text())] == ["ok"]
    assert [x["custom_id"] for x in batch_lines((tmp_path / "err.jsonl").read_text())] == ["bad"]


def test_ray_is_a_flag_and_its_address_an_option_of_its_own(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[Any, ...]] = []
    monkeypatch.setattr(run_command, "run_batch_file", lambda *args, **options: ran.append(args))
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line("a", "hi")])
    out = str(tmp_path / "out.jsonl")
    assert freight("run", "--ray", str(source), "-o", out).exit_code == 0
    assert freight("run", str(source), "-o", out, "--ray-address", "auto").exit_code == 0
    assert freight("run", str(source), "-o", out).exit_code == 0
    # (input, output, errors, endpoint, home, verbose, ray address, model)
    assert [(args[0], args[6]) for args in ran] == [
        (source, "local"),
        (source, "auto"),
        (source, None),
    ]
    missing = freight("run", "--ray", str(tmp_path / "in.jsonl.gz"), "-o", out)
    assert missing.exit_code == 2 and "in.jsonl.gz does not exist" in missing.stderr
    table = freight("run", "--ray", "t.csv", "--prompt", "{{ x }}", "-o", "o.csv")
    assert table.exit_code == 2 and "--ray apply to batch files" in table.stderr
