"""`freight run` on a table (service/table_run.py): rows through the offline batch path in
chunks, on the echo engine (which replies with the prompt), answers joined back in order;
`--embed` on a stand-in embeddings engine (the real model's run is tests/e2e's)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from freight.config import DEFAULT_EMBEDDING_MODEL, ModelSettings, Settings
from freight.engines.base import EmbeddingRequest, Embeddings
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.service import table_run
from freight.tables import TableError, formats
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


class Vectors:
    """A stand-in embeddings engine: a text's vector is [its length, its number of words]."""

    name = "vectors"

    def __init__(self) -> None:
        self.num_inputs = 0

    async def start(self) -> None:
        pass

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        texts = [str(text) for text in request.inputs]
        self.num_inputs += len(texts)
        return Embeddings(
            [[float(len(t)), float(len(t.split()))] for t in texts],
            num_prompt_tokens=sum(len(t.split()) for t in texts),
        )

    async def abort(self, request_ids: list[str]) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def run(
    settings: Settings,
    table: Path,
    output: Path,
    *,
    rows_per_run: int = 4,
    model: str = "echo",
    embedder: Vectors | None = None,
    **options: Any,
) -> tuple[int, str, int]:
    """Run a table on a fresh echo engine (and `embedder`): the exit code, what was
    printed, and how many requests the echo engine ran."""

    async def go() -> tuple[int, str, int]:
        engines = EnginePool(settings, Registry(settings))
        echo = EchoEngine()
        engines.add(echo)
        if embedder is not None:
            engines.add(embedder)
        prepared = table_run.prepare(settings, table, output, model=model, **options)
        printed = io.StringIO()
        code = await table_run.run_table_async(
            settings,
            prepared,
            console=Console(file=printed, width=200),
            engines=engines,
            rows_per_run=rows_per_run,
        )
        return code, printed.getvalue(), echo.num_requests

    return asyncio.run(go())


def read(path: Path) -> list[dict[str, Any]]:
    reader = formats.TableReader(path, formats.format_of(path))
    try:
        return [row for batch in reader.batches() for row in batch.to_pylist()]
    finally:
        reader.close()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_answers_join_back_to_their_rows_in_order(settings: Settings, tmp_path: Path) -> None:
    texts = [f"review number {i}" for i in range(10)]
    texts[3] = None  # a null cell: its row fails, the others run
    table = pa.table({"id": list(range(100, 110)), "text": texts})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=3)

    code, printed, num_requests = run(
        settings, tmp_path / "in.parquet", tmp_path / "out.csv", prompt="{{ text }}", usage=True
    )

    assert code == 3, printed  # finished, some rows failed
    assert "9 rows answered, 1 failed" in printed
    assert num_requests == 9
    rows = read(tmp_path / "out.csv")
    assert [r["id"] for r in rows] == list(range(100, 110))
    assert [r["text"] for r in rows] == texts
    assert [r["answer"] for r in rows] == texts
    assert rows[3]["error"] == "the column 'text' is empty (null) in this row"
    assert [r["error"] for r in rows if r["id"] != 103] == [None] * 9
    assert rows[0]["prompt_tokens"] == 3 and rows[0]["completion_tokens"] == 3
    assert rows[3]["prompt_tokens"] is None


def test_choices_validate_each_answer(settings: Settings, tmp_path: Path) -> None:
    labels = ["yes", "no", "maybe", "yes"]
    source = write_jsonl(
        tmp_path / "in.jsonl", [{"q": i, "label": x} for i, x in enumerate(labels)]
    )

    code, printed, _ = run(
        settings,
        source,
        tmp_path / "out.jsonl",
        prompt='{"verdict": "{{ label }}"}',  # the echo engine's answer is its prompt
        choices=["yes", "no"],
        output_column="verdict",
    )

    assert code == 3, printed
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["yes", "no", None, "yes"]
    assert "'maybe' is not one of ['yes', 'no']" in rows[2]["error"]
    assert list(rows[0]) == ["q", "label", "verdict", "error"]


def test_schema_properties_become_typed_parquet_columns(settings: Settings, tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "stars": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["stars"],
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    source = write_jsonl(tmp_path / "in.jsonl", [{"n": 1}, {"n": 5}])

    code, printed, _ = run(
        settings,
        source,
        tmp_path / "out.parquet",
        prompt='{"stars": {{ n }}, "tags": ["x"]}',
        schema_path=tmp_path / "schema.json",
    )

    assert code == 0, printed
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("stars").type == pa.int64()
    assert out.to_pylist() == [
        {"n": 1, "stars": 1, "tags": '["x"]', "error": None},
        {"n": 5, "stars": 5, "tags": '["x"]', "error": None},
    ]


def test_resume_redoes_no_row_already_written(settings: Settings, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(10)])
    output = tmp_path / "out.csv"
    code, _, _ = run(settings, source, output, prompt="row {{ n }}", rows_per_run=3)
    assert code == 0
    whole = output.read_text()
    lines = whole.splitlines(keepends=True)
    # As a run killed while writing its sixth row leaves it: a header, five rows, half a row.
    output.write_text("".join(lines[:6]) + lines[6][:4])

    code, printed, num_requests = run(
        settings, source, output, prompt="row {{ n }}", rows_per_run=3, resume=True
    )

    assert code == 0, printed
    assert "resuming: 5 rows are already in" in printed
    assert num_requests == 5
    assert output.read_text() == whole


def test_an_id_repeated_in_a_later_chunk_stops_the_run_before_it_starts(
    settings: Settings, tmp_path: Path
) -> None:
    keys = ["a", "b", "c", "d", "e", "b", "f"]  # rows 2 and 6 run in different chunks of 2
    source = write_jsonl(tmp_path / "in.jsonl", [{"k": k} for k in keys])
    output = tmp_path / "o.jsonl"
    with pytest.raises(TableError) as raised:
        run(settings, source, output, prompt="{{ k }}", id_column="k", rows_per_run=2)
    assert raised.value.message == (
        "--id-column 'k': rows 2 and 6 both have the id 'b'; each row needs an id of its "
        "own (without --id-column, rows are numbered)"
    )
    assert not output.exists()

    keys[5] = "g"
    source = write_jsonl(tmp_path / "in.jsonl", [{"k": k} for k in keys])
    code, printed, num_requests = run(
        settings, source, output, prompt="{{ k }}", id_column="k", rows_per_run=2
    )
    assert code == 0, printed
    assert num_requests == len(keys)
    assert [r["answer"] for r in read(output)] == keys


@pytest.fixture
def embed_settings(tmp_path: Path) -> Settings:
    """Settings with the stand-in embeddings model `vectors` beside the echo engine."""
    return make_settings(
        tmp_path / "home",
        models=[
            ModelSettings(name="echo", engine="echo"),
            ModelSettings(name="vectors", engine="embeddings", path=tmp_path),
        ],
    )


def test_embed_writes_a_vector_column_and_a_null_cell_fails_only_its_row(
    embed_settings: Settings, tmp_path: Path
) -> None:
    texts = ["fast shipping", None, "the zipper broke on day one", "", "fine"]
    pq.write_table(pa.table({"id": [1, 2, 3, 4, 5], "text": texts}), tmp_path / "in.parquet")
    embedder = Vectors()

    code, printed, num_chats = run(
        embed_settings,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        model="vectors",
        embedder=embedder,
        embed="text",
        id_column="id",
        usage=True,
        rows_per_run=2,
    )

    assert code == 3, printed  # finished, two rows failed
    assert "3 rows answered, 2 failed" in printed
    assert (num_chats, embedder.num_inputs) == (0, 3)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("embedding").type == pa.list_(pa.float32())
    rows = out.to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["embedding"] for r in rows] == [[13.0, 2.0], None, [27.0, 6.0], None, [4.0, 1.0]]
    assert rows[1]["error"] == "the column 'text' is empty (null) in this row"
    assert rows[3]["error"] == "the column 'text' is empty in this row: no text to embed"
    assert [r["prompt_tokens"] for r in rows] == [2, None, 6, None, 1]

    code, _, _ = run(
        embed_settings,
        tmp_path / "in.parquet",
        tmp_path / "out.csv",
        model="vectors",
        embedder=Vectors(),
        embed="text",
        output_column="vector",
    )
    assert code == 3
    assert [r["vector"] for r in read(tmp_path / "out.csv")] == [
        "[13.0, 2.0]",
        None,
        "[27.0, 6.0]",
        None,
        "[4.0, 1.0]",
    ]


def test_embed_uses_the_embeddings_model_and_takes_no_prompt(
    embed_settings: Settings, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"n": 1, "text": "x"}])
    output = tmp_path / "out.jsonl"
    prepared = table_run.prepare(embed_settings, source, output, embed="text")
    assert prepared.requests.model == DEFAULT_EMBEDDING_MODEL
    assert prepared.requests.url == "/v1/embeddings"
    assert prepared.schema.names == ["n", "text", "embedding", "error"]

    def refused(**options: Any) -> str:
        with pytest.raises(TableError) as raised:
            table_run.prepare(embed_settings, source, output, **options)
        return raised.value.message

    assert refused(embed="text", prompt="{{ text }}", choices=["a", "b"]) == (
        "--embed writes a column's embeddings and takes no options for a generated answer; "
        "drop --prompt/--prompt-file, --choices"
    )
    assert "--schema" in refused(embed="text", schema_path=tmp_path / "s.json")
    assert "--max-tokens, --temperature" in refused(embed="text", max_tokens=3, temperature=0)
    assert "a table needs its prompt" in refused()
    assert refused(embed="text", model="echo") == (
        "the model 'echo' does not serve /v1/embeddings, which --embed needs; --model may "
        f"name one that does: {DEFAULT_EMBEDDING_MODEL}, vectors"
    )
    assert "does not serve /v1/chat/completions, which a prompt needs" in refused(
        prompt="{{ text }}", model="vectors"
    )
    assert "--embed 'n' holds int64 values" in refused(embed="n")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "nope"}, "unknown model 'nope'; the models are:"),
        ({"id_column": "key"}, "--id-column 'key' is not a column of the table"),
        ({"choices": ["a", "b"], "schema_path": Path("s.json")}, "give one"),
        ({"output_column": "text"}, "the table already has 'text'"),
        ({"schema_path": Path("missing.json")}, "cannot read missing.json"),
        ({"resume": True, "output_name": "out.parquet"}, "--resume continues a .csv"),
    ],
)
def test_bad_options_stop_the_run_before_it_starts(
    settings: Settings, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    output = tmp_path / options.pop("output_name", "out.jsonl")
    output.write_text("")
    with pytest.raises(TableError) as raised:
        table_run.prepare(settings, source, output, prompt="{{ text }}", **options)
    assert message in raised.value.message
