"""`freight run` on a table as a user runs it: examples/reviews.csv in, the table back with
answers; bad input stops with exit code 2 before any engine starts; the real model's
structured answers always fit their choices or schema; `--embed` gives the real
embeddings model's vectors, the same as /v1/embeddings gives."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator
from rich.console import Console

from freight.config import DEFAULT_EMBEDDING_MODEL
from freight.service import table_run
from tests.conftest import CHAT_MODEL, LiveServer, make_settings, run_cli
from tests.e2e.test_embeddings_api import same_vector

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REVIEWS = EXAMPLES / "reviews.csv"
REVIEW_SCHEMA = EXAMPLES / "review-schema.json"
CHOICES = "positive,negative,neutral"
PROMPT = "Is this review positive, negative or neutral?\n\n{{ review }}"


def read_csv(path: Path) -> pa.Table:
    """A CSV as `freight run` reads one: an empty cell is null."""
    return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))


def echo_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "freight.toml").write_text('[[models]]\nname = "echo"\nengine = "echo"\n')
    return home


def test_reviews_with_choices_keep_every_row_once_in_order(tmp_path: Path) -> None:
    home = echo_home(tmp_path)
    # The echo engine answers with its prompt, so the prompt is the answer to expect; a
    # Printer review answers "great", which is not a choice: that row has an error.
    prompt = '{"answer": "{{ {"Tent": "neutral", "Printer": "great"}.get(product, "positive") }}"}'
    done = run_cli(
        "run",
        str(REVIEWS),
        "--choices",
        CHOICES,
        "--prompt",
        prompt,
        "--model",
        "echo",
        "-o",
        str(tmp_path / "out.csv"),
        "--home",
        str(home),
    )

    table = read_csv(REVIEWS)
    out = read_csv(tmp_path / "out.csv")
    num_printers = table["product"].to_pylist().count("Printer")
    assert num_printers > 0
    assert done.returncode == 3, done.stderr
    assert f"{table.num_rows - num_printers} rows answered, {num_printers} failed" in done.stderr
    assert out.column_names == [*table.column_names, "answer", "error"]
    assert out.select(table.column_names).equals(table)  # every row once, in order, unchanged
    for row in out.to_pylist():
        if row["product"] == "Printer":
            assert row["answer"] is None and "does not match the schema" in row["error"]
        else:
            expected = "neutral" if row["product"] == "Tent" else "positive"
            assert (row["answer"], row["error"]) == (expected, None)


def test_stdin_table_in_a_format_out_as_jsonl(tmp_path: Path) -> None:
    home = echo_home(tmp_path)
    done = run_cli(
        "run",
        "-",
        "--format",
        "tsv",
        "--prompt",
        "{{ text }}!",
        "--model",
        "echo",
        "--id-column",
        "id",
        "-o",
        str(tmp_path / "out.jsonl"),
        "--home",
        str(home),
        stdin="id\ttext\n1\tfirst\n2\tsecond\n",
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [
        {"id": 1, "text": "first", "answer": "first!", "error": None},
        {"id": 2, "text": "second", "answer": "second!", "error": None},
    ]


def bad_runs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Each kind of bad input: the `freight run` arguments, and what the message says."""
    reviews = str(REVIEWS)
    return {
        "unknown column": (
            [reviews, "--prompt", "{{ txet }}"],
            "--prompt uses the column 'txet' that the table does not have; "
            "its columns are: id, product, review",
        ),
        "syntax error": (
            [reviews, "--prompt", "{% if review %}"],
            "--prompt: template syntax error on its line 1",
        ),
        "one choice": (
            [reviews, "--prompt", "{{ review }}", "--choices", "positive"],
            "--choices needs at least two non-empty values",
        ),
        "invalid schema": (
            [reviews, "--prompt", "{{ review }}", "--schema", str(tmp_path / "bad-schema.json")],
            "not a valid JSON Schema",
        ),
        "missing file": (
            [str(tmp_path / "missing.csv"), "--prompt", "{{ review }}"],
            "does not exist",
        ),
        "unreadable file": (
            [str(tmp_path / "garbled.parquet"), "--prompt", "{{ review }}"],
            "as parquet",
        ),
        "no prompt": ([reviews, "--choices", CHOICES], "a table needs its prompt"),
        "embed and a prompt": (
            [reviews, "--embed", "review", "--prompt", "{{ review }}"],
            "takes no options for a generated answer; drop --prompt/--prompt-file",
        ),
        "embed a number column": ([reviews, "--embed", "id"], "--embed 'id' holds int64 values"),
        "repeated id": (
            [str(tmp_path / "repeated.csv"), "--prompt", "{{ text }}", "--id-column", "id"],
            "--id-column 'id': rows 1 and 3 both have the id 'a'",
        ),
    }


@pytest.mark.parametrize("case", list(bad_runs(Path("."))))
def test_bad_input_exits_2_before_the_engine_starts(tmp_path: Path, case: str) -> None:
    """No freight.toml: the model is the real one, so a run that got as far as starting
    its engine would not exit 2, and not within the timeout."""
    (tmp_path / "bad-schema.json").write_text('{"type": "objekt", "properties": {}}')
    (tmp_path / "garbled.parquet").write_text("not parquet at all")
    (tmp_path / "repeated.csv").write_text("id,text\na,x\nb,y\na,z\n")
    args, message = bad_runs(tmp_path)[case]
    output = tmp_path / "out.csv"
    done = run_cli("run", *args, "-o", str(output), "--home", str(tmp_path / "home"), timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr
    assert not output.exists()


def run_table(server: LiveServer, tmp_path: Path, output: Path, **options: Any) -> tuple[int, str]:
    """What `freight run TABLE` does, on the session's engine instead of its own."""
    settings = make_settings(tmp_path / "home")
    head = tmp_path / "reviews-head.csv"
    head.write_text("".join(REVIEWS.read_text().splitlines(keepends=True)[:11]))  # 10 rows
    prepared = table_run.prepare(
        settings, head, output, model=CHAT_MODEL, temperature=0.0, **options
    )
    printed = io.StringIO()
    run = table_run.run_table_async(
        settings, prepared, console=Console(file=printed, width=200), engines=server.svc.engines
    )
    return server.run_in_loop(run, 600), printed.getvalue()


@pytest.mark.slow
def test_real_model_answers_fit_the_choices_and_the_schema(
    real_server: LiveServer, tmp_path: Path
) -> None:
    code, printed = run_table(
        real_server,
        tmp_path,
        tmp_path / "out.csv",
        prompt=PROMPT,
        choices=CHOICES.split(","),
        max_tokens=20,
    )
    assert code == 0, printed  # structured outputs: every answer is one of the choices
    rows = read_csv(tmp_path / "out.csv").to_pylist()
    assert len(rows) == 10
    assert {r["answer"] for r in rows} <= set(CHOICES.split(","))

    code, printed = run_table(
        real_server,
        tmp_path,
        tmp_path / "out.parquet",
        prompt="Label this product review.\n\n{{ review }}",
        schema_path=REVIEW_SCHEMA,
        max_tokens=120,
    )
    assert code in (0, 3), printed
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["id"] for r in rows] == list(range(1001, 1011))
    validator = Draft202012Validator(json.loads(REVIEW_SCHEMA.read_text()))
    answered = [r for r in rows if r["error"] is None]
    assert answered, rows
    for row in answered:
        answer = {k: row[k] for k in ("sentiment", "topic", "summary")}
        assert not list(validator.iter_errors(answer)), row
    for row in rows:
        if row["error"] is not None:
            assert row["sentiment"] is None


@pytest.mark.slow
def test_embed_a_column_with_the_real_embeddings_model(
    module_echo_server: LiveServer, tmp_path: Path
) -> None:
    """The embeddings model runs in the server's process (as in test_embeddings_api, whose
    fixture this is): no vLLM engine is needed."""
    server = module_echo_server
    head = tmp_path / "reviews-head.csv"
    lines = REVIEWS.read_text().splitlines(keepends=True)[:6]  # a header and 5 rows
    lines[3] = lines[3].split(",")[0] + ",Coffee maker,\n"  # a review left empty: null
    head.write_text("".join(lines))
    settings = make_settings(tmp_path / "home")
    prepared = table_run.prepare(settings, head, tmp_path / "out.parquet", embed="review")
    printed = io.StringIO()
    code = server.run_in_loop(
        table_run.run_table_async(
            settings,
            prepared,
            console=Console(file=printed, width=200),
            engines=server.svc.engines,
        ),
        600,
    )

    assert code == 3, printed.getvalue()  # one row failed: its review is empty
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    table = read_csv(head).to_pylist()
    assert [{k: r[k] for k in ("id", "product", "review")} for r in rows] == table
    assert rows[2]["embedding"] is None
    assert rows[2]["error"] == "the column 'review' is empty (null) in this row"
    embedded = [r for r in rows if r["error"] is None]
    assert len(embedded) == 4
    api = server.openai().embeddings.create(
        model=DEFAULT_EMBEDDING_MODEL, input=[r["review"] for r in embedded]
    )
    for row, item in zip(embedded, api.data, strict=True):
        assert len(row["embedding"]) == 384
        assert same_vector(row["embedding"], item.embedding)
