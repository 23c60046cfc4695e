"""A table through a server (`freight batches create --table` / `wait --table`) and through
`freight.map`: the same rows, requests and answers as `freight run` on the table. On the
echo engine (its answer is its prompt) for what Freight does with rows; on the session's
real engine (fp32, greedy) for the answers themselves."""

from __future__ import annotations

import asyncio
import functools
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

import freight
from freight.cli import main
from freight.service import table_batches, table_map, table_run
from freight.tables import TableError
from tests.conftest import CHAT_MODEL, LiveServer, make_settings, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REVIEWS = EXAMPLES / "reviews.csv"
CHOICES = "positive,negative,neutral"
PROMPT = "Is this review positive, negative or neutral?\n\n{{ review }}"


def read_csv(path: Path) -> pa.Table:
    return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))


def head(tmp_path: Path, num_rows: int) -> Path:
    """The first `num_rows` reviews of examples/reviews.csv."""
    path = tmp_path / "reviews-head.csv"
    path.write_text("".join(REVIEWS.read_text().splitlines(keepends=True)[: num_rows + 1]))
    return path


def files_on(server: LiveServer) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{server.base_url}/v1/files").json()["data"]
    return data


def test_create_and_wait_join_answers_back_to_every_row(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    env = {"FREIGHT_BASE_URL": f"{echo_server.base_url}/v1"}
    table = tmp_path / "in.jsonl"
    rows = [
        {"k": "a", "text": "first"},
        {"k": "b", "text": None},  # a null cell: not sent, the other rows are
        {"k": "c", "text": "third"},
        {"k": "a", "text": "again"},  # a repeated id: not sent
    ]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))

    created = run_cli(
        "batches",
        "create",
        "--table",
        str(table),
        "--prompt",
        "{{ text }}!",
        "--model",
        "echo",
        "--id-column",
        "k",
        "--metadata",
        "team=qa",
        "-q",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert "not sent: row 2: the column 'text' is empty (null) in this row" in created.stderr
    assert "not sent: row 4: row 1 already has the id 'a'" in created.stderr
    assert "2 of 4 rows sent as batch" in created.stderr
    batch_id = created.stdout.strip()
    batch = httpx.get(f"{echo_server.base_url}/v1/batches/{batch_id}").json()
    assert batch["metadata"]["team"] == "qa"
    content = httpx.get(f"{echo_server.base_url}/v1/files/{batch['input_file_id']}/content")
    assert [json.loads(x)["custom_id"] for x in content.text.splitlines()] == ["a", "c"]

    waited = run_cli(
        "batches",
        "wait",
        batch_id,
        "--interval",
        "0.05",
        "--table",
        str(table),
        "--usage",
        "-o",
        str(tmp_path / "out.parquet"),
        env=env,
    )

    assert waited.returncode == 3, waited.stderr  # completed, two rows have errors
    assert "completed: 2 rows answered, 2 failed" in waited.stderr
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [{"k": r["k"], "text": r["text"]} for r in out] == rows
    assert [r["answer"] for r in out] == ["first!", None, "third!", None]
    assert out[1]["error"] == table_batches.NOT_SENT
    assert out[3]["error"] == "row 1 already has the id 'a'"
    assert out[0]["error"] is None and out[0]["prompt_tokens"] == 1  # echo: one word
    assert out[1]["prompt_tokens"] is None


def test_bad_table_input_exits_2_before_anything_is_uploaded(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    env = {"FREIGHT_BASE_URL": f"{echo_server.base_url}/v1"}
    bad = {
        "unknown column": (["--table", str(REVIEWS), "--prompt", "{{ txet }}"], "'txet'"),
        "one choice": (
            ["--table", str(REVIEWS), "--prompt", "{{ review }}", "--choices", "positive"],
            "--choices needs at least two",
        ),
        "missing table": (["--table", str(tmp_path / "no.csv"), "--prompt", "x"], "does not exist"),
        "no prompt": (["--table", str(REVIEWS)], "a table needs its prompt"),
        "both sources": (
            ["--table", str(REVIEWS), "--prompt", "x", "--input-file-id", "file-1"],
            "give one",
        ),
        "table option alone": (["--input-file-id", "file-1", "--prompt", "x"], "give --table"),
    }
    for case, (args, message) in bad.items():  # in process: the CLI's own subprocess is below
        done = CliRunner().invoke(main.app, ["batches", "create", *args], env=env)
        assert done.exit_code == 2, (case, done.stderr)
        assert message in " ".join(done.stderr.split()), (case, done.stderr)
    assert files_on(echo_server) == []

    # wait --table on a batch that was not made from a table: exit 2, nothing written
    up = httpx.post(
        f"{echo_server.base_url}/v1/files",
        data={"purpose": "batch"},
        files={
            "file": (
                "in.jsonl",
                b'{"custom_id": "1", "method": "POST", "url": '
                b'"/v1/chat/completions", "body": {"model": "echo", "messages": '
                b'[{"role": "user", "content": "hi"}]}}\n',
            )
        },
    ).json()
    plain = httpx.post(
        f"{echo_server.base_url}/v1/batches",
        json={
            "input_file_id": up["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ).json()
    done = run_cli(
        "batches",
        "wait",
        plain["id"],
        "--interval",
        "0.05",
        "--table",
        str(REVIEWS),
        "-o",
        str(tmp_path / "out.csv"),
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "was not created from a table" in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_map_takes_a_list_of_dicts_locally_and_through_a_server(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    rows = [{"n": 1, "text": "one"}, {"n": 2, "text": None}, {"n": 3, "text": "three"}]
    settings = make_settings(tmp_path / "home")

    local = freight.map(rows, prompt="{{ text }}?", model="echo", settings=settings)
    remote = freight.map(
        rows,
        prompt="{{ text }}?",
        model="echo",
        base_url=f"{echo_server.base_url}/v1",
        poll_seconds=0.05,
        progress=False,
    )

    assert [r["answer"] for r in local] == ["one?", None, "three?"]
    assert [{"n": r["n"], "text": r["text"]} for r in local] == rows
    assert local[1]["error"] == "the column 'text' is empty (null) in this row"
    # Through the server the null row is not sent either; the other answers are the same.
    assert [r["answer"] for r in remote] == [r["answer"] for r in local]
    assert remote[1]["error"] == table_batches.NOT_SENT


def test_map_runs_where_an_event_loop_is_already_running(tmp_path: Path) -> None:
    """A notebook's cell runs inside an event loop; map still runs its rows."""
    settings = make_settings(tmp_path / "home")
    frame = pa.table({"text": ["x", "y"]})

    async def cell() -> Any:
        return freight.map(frame, prompt="{{ text }}", model="echo", settings=settings)

    answered = asyncio.run(cell())
    assert isinstance(answered, pa.Table)
    assert answered["answer"].to_pylist() == ["x", "y"]


def test_map_refuses_bad_input_before_any_row_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    with pytest.raises(TableError, match="schema=: a JSON Schema is a JSON object, not a list"):
        freight.map([{"a": 1}], prompt="{{ a }}", schema=[], model="echo", settings=settings)  # type: ignore[arg-type]
    with pytest.raises(TableError, match="the column 'b' that the table does not have"):
        freight.map([{"a": 1}], prompt="{{ b }}", model="echo", settings=settings)


# --- the real engine ----------------------------------------------------------------------


@pytest.mark.slow
def test_server_path_and_map_answer_as_freight_run_does(
    real_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = head(tmp_path, 6)
    options: dict[str, Any] = {"max_tokens": 20, "temperature": 0.0}
    settings = make_settings(tmp_path / "home")

    # freight run on the table, on the session's engine
    prepared = table_run.prepare(
        settings,
        table,
        tmp_path / "run.csv",
        prompt=PROMPT,
        model=CHAT_MODEL,
        choices=CHOICES.split(","),
        **options,
    )
    printed = io.StringIO()
    code = real_server.run_in_loop(
        table_run.run_table_async(
            settings,
            prepared,
            console=Console(file=printed, width=200),
            engines=real_server.svc.engines,
        )
    )
    assert code == 0, printed.getvalue()
    by_run = read_csv(tmp_path / "run.csv")

    # freight batches create --table / wait --table
    env = {"FREIGHT_BASE_URL": f"{real_server.base_url}/v1"}
    created = run_cli(
        "batches",
        "create",
        "--table",
        str(table),
        "--prompt",
        PROMPT,
        "--choices",
        CHOICES,
        "--model",
        CHAT_MODEL,
        "--max-tokens",
        "20",
        "--temperature",
        "0",
        "-q",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    waited = run_cli(
        "batches",
        "wait",
        created.stdout.strip(),
        "--interval",
        "0.1",
        "--table",
        str(table),
        "-o",
        str(tmp_path / "server.parquet"),
        env=env,
    )
    assert waited.returncode == 0, waited.stderr
    by_server = pq.read_table(tmp_path / "server.parquet")

    # freight.map, locally (on the session's engine instead of one of its own) and remotely
    monkeypatch.setattr(table_map, "_run_sync", real_server.run_in_loop)
    monkeypatch.setattr(
        table_map,
        "run_local",
        functools.partial(table_map.run_local, engines=real_server.svc.engines),
    )
    rows = by_run.select(["id", "product", "review"]).to_pylist()
    map_options = {"prompt": PROMPT, "choices": CHOICES.split(","), "model": CHAT_MODEL, **options}
    by_map = freight.map(rows, settings=settings, **map_options)
    by_map_remote = freight.map(
        rows, base_url=f"{real_server.base_url}/v1", poll_seconds=0.1, **map_options
    )

    answers = by_run["answer"].to_pylist()
    assert len(answers) == 6 and set(answers) <= set(CHOICES.split(","))
    assert by_server.to_pylist() == by_run.to_pylist()
    assert [r["answer"] for r in by_map] == answers
    assert [r["answer"] for r in by_map_remote] == answers
    assert [r["error"] for r in by_map + by_map_remote] == [None] * 12
