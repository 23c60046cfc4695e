"""What an answer becomes: the answer columns, and a result line turned into their values.

A plain prompt's answer is one text column (`--output-column`, default `answer`). With
`--schema`, the model answers under structured outputs and each top-level property of
the schema is a column: scalars keep their JSON type (string, integer, number,
boolean), anything else is JSON text. `--choices a,b,c` is the shortcut for a schema
with one enum property, named like the output column. An answer that is not JSON, or
does not validate against the schema, is that row's error, never a value. `--embed`
writes one list<float32> column (`embedding`): the vector of the row's text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic_core import PydanticCustomError

from freight.protocol import json_output
from freight.tables import TableError
from freight.tables.prompts import RowError

DEFAULT_COLUMN = "answer"
EMBEDDING_COLUMN = "embedding"
EMBEDDING_TYPE = pa.list_(pa.float32())  # the models' own precision
ERROR_COLUMN = "error"
USAGE_COLUMNS = ("prompt_tokens", "completion_tokens")
SCHEMA_NAME = "row_answer"
JSON_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One row's result: its answer values, or why it has none, and its token counts."""

    values: dict[str, Any] | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class AnswerColumns:
    """The columns answers are written to, and how a result line fills them."""

    def __init__(self, fields: list[pa.Field], schema: dict[str, Any] | None) -> None:
        self.fields = fields
        self.schema = schema
        self._validator = Draft202012Validator(schema) if schema is not None else None

    @classmethod
    def text(cls, column: str = DEFAULT_COLUMN) -> AnswerColumns:
        """The model's reply as text in one column."""
        return cls([pa.field(column, pa.string())], None)

    @classmethod
    def choices(cls, values: Sequence[str], column: str = DEFAULT_COLUMN) -> AnswerColumns:
        """One of `values` in one column (`--choices`)."""
        cleaned = [v.strip() for v in values]
        if len(cleaned) < 2 or any(not v for v in cleaned):
            raise TableError(
                f"--choices needs at least two non-empty values separated by commas, "
                f"not '{','.join(values)}'"
            )
        if len(set(cleaned)) != len(cleaned):
            raise TableError(f"--choices names a value twice: {','.join(cleaned)}")
        schema = {
            "type": "object",
            "properties": {column: {"type": "string", "enum": cleaned}},
            "required": [column],
            "additionalProperties": False,
        }
        return cls([pa.field(column, pa.string())], schema)

    @classmethod
    def from_schema(cls, schema: Any, where: str = "--schema") -> AnswerColumns:
        """One column per top-level property of `schema`, a JSON Schema of an object."""
        if not isinstance(schema, dict):
            kind = type(schema).__name__
            raise TableError(f"{where}: a JSON Schema is a JSON object, not a {kind}")
        try:
            json_output.check_schema(schema)
        except PydanticCustomError as exc:
            raise TableError(f"{where}: {exc.message()}") from None
        properties = schema.get("properties")
        if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
            raise TableError(
                f"{where}: the schema must describe an object with properties "
                '({"type": "object", "properties": {...}}): each property becomes a column'
            )
        fields = [pa.field(name, _arrow_type(prop)) for name, prop in properties.items()]
        return cls(fields, schema)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The request's `response_format`: the schema, enforced while decoding."""
        if self.schema is None:
            return None
        return {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": self.schema, "strict": True},
        }

    def outcome(self, line: dict[str, Any]) -> Outcome:
        """A batch output or error line turned into the row's values or error."""
        response = line.get("response") or {}
        body = response.get("body") or {}
        usage = body.get("usage") or {}
        tokens = {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }
        problem = line.get("error") or body.get("error")
        if problem or response.get("status_code") != 200:
            problem = problem or {}
            code, message = problem.get("code"), problem.get("message") or "no answer"
            return Outcome(error=f"{code}: {message}" if code else message, **tokens)
        try:
            return Outcome(values=self.answer(body), **tokens)
        except RowError as exc:
            return Outcome(error=str(exc), **tokens)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The column values of a successful response's body; RowError if it has none."""
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise RowError("the response has no message content") from None
        return self.values(content, choice.get("finish_reason"))

    def values(self, content: str, finish_reason: str | None = None) -> dict[str, Any]:
        """The column values of one reply; RowError if it does not fit the schema."""
        if self._validator is None:
            return {self.fields[0].name: content}
        try:
            answer = json.loads(content)
        except ValueError:
            cut = " (it reached --max-tokens)" if finish_reason == "length" else ""
            raise RowError(f"the answer is not JSON{cut}: {content[:200]!r}") from None
        error = best_match(self._validator.iter_errors(answer))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise RowError(f"the answer does not match the schema (at {where}: {error.message})")
        return {f.name: _column_value(answer.get(f.name), f.type) for f in self.fields}


class EmbeddingColumn(AnswerColumns):
    """`--embed`: the vector of the row's text, in one list<float32> column."""

    def __init__(self, column: str = EMBEDDING_COLUMN) -> None:
        super().__init__([pa.field(column, EMBEDDING_TYPE)], None)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            vector = body["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError):
            raise RowError("the response has no embedding") from None
        if not isinstance(vector, list):
            raise RowError("the response's embedding is not a list of floats")
        return {self.fields[0].name: vector}


def _arrow_type(prop: Any) -> pa.DataType:
    """A property's column type: its JSON type if that is one scalar type, else JSON text."""
    if not isinstance(prop, dict):
        return pa.string()
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if isinstance(kind, str):
        return JSON_TYPES.get(kind, pa.string())
    return pa.string()


def _column_value(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == pa.string():
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if kind == pa.float64():
        return float(value)
    if kind == pa.int64():
        return int(value)  # JSON Schema counts 4.0 as an integer; the column holds 4
    return value


def output_schema(input_schema: pa.Schema, answers: AnswerColumns, *, usage: bool) -> pa.Schema:
    """The output table's schema: the input's columns, then the answers, `error`, usage.

    A name the input already has would be written twice: that is an error naming it.
    """
    added = [*answers.fields, pa.field(ERROR_COLUMN, pa.string())]
    if usage:
        added += [pa.field(name, pa.int64()) for name in USAGE_COLUMNS]
    taken = sorted(set(input_schema.names) & {f.name for f in added})
    if taken:
        raise TableError(
            f"the table already has {', '.join(repr(n) for n in taken)}, which this run "
            "would add; rename the output (--output-column) or the table's column"
        )
    return pa.schema([*input_schema, *added])


def columns(outcomes: Sequence[Outcome], answers: AnswerColumns, *, usage: bool) -> list[pa.Array]:
    """The added columns of a chunk, in `output_schema` order, one entry per row."""
    arrays = [
        pa.array([None if o.values is None else o.values.get(f.name) for o in outcomes], f.type)
        for f in answers.fields
    ]
    arrays.append(pa.array([o.error for o in outcomes], pa.string()))
    if usage:
        arrays.append(pa.array([o.prompt_tokens for o in outcomes], pa.int64()))
        arrays.append(pa.array([o.completion_tokens for o in outcomes], pa.int64()))
    return arrays
