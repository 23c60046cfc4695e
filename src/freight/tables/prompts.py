"""A row becomes a request: prompt templates checked against the table, rendered per row.

Templates are Jinja2 in a sandboxed environment: a table's cells are data, and a
template is only allowed to read them. A template is checked once, before any row is
read, against the table's columns, so a misspelt column stops the run before any work.
Each row's columns are the template's variables (`{{ text }}`), and `row` holds them
all (`{{ row["review text"] }}` for names that are not identifiers). A null cell is
left out of both, so a template that uses it fails on that row alone (StrictUndefined),
and the other rows still run. With `--embed COLUMN` a row's request is that column's
text, for an embeddings model. Each row's `custom_id` is its row number or its
`--id-column` value; those values are checked for repeats before any row runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import jinja2
import pyarrow as pa
import pyarrow.compute as pc
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from freight.protocol import embeddings
from freight.tables import TableError

ENDPOINT = "/v1/chat/completions"
ROW_VARIABLE = "row"


class RowError(Exception):
    """One row cannot be asked or answered; its message goes into the row's `error`."""


class RowTemplate:
    """One template (`--prompt`, `--system`) checked against the table's columns."""

    def __init__(self, source: str, columns: Sequence[str], *, option: str = "--prompt") -> None:
        env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        try:
            parsed = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TableError(
                f"{option}: template syntax error on its line {exc.lineno}: {exc.message}"
            ) from None
        names = meta.find_undeclared_variables(parsed) - set(env.globals) - {ROW_VARIABLE}
        unknown = sorted(names - set(columns))
        if unknown:
            raise TableError(
                f"{option} uses {_columns(unknown)} that the table does not have; "
                f"its columns are: {', '.join(columns)}"
            )
        self.columns = sorted(names)  # the columns the template reads by name
        self._template = env.from_string(parsed)

    def render(self, row: Mapping[str, Any]) -> str:
        """The template's text for `row`; RowError if it needs a null cell or fails."""
        values = {k: v for k, v in row.items() if v is not None}
        context = {ROW_VARIABLE: values, **values}
        try:
            return self._template.render(context)
        except jinja2.UndefinedError as exc:
            empty = [c for c in self.columns if row.get(c) is None]
            if empty:
                verb = "is" if len(empty) == 1 else "are"
                raise RowError(f"{_columns(empty)} {verb} empty (null) in this row") from None
            nulls = [k for k, v in row.items() if v is None]
            hint = f" (empty in this row: {', '.join(nulls)})" if nulls else ""
            raise RowError(f"the template failed on this row: {exc.message}{hint}") from None
        except Exception as exc:
            # The template is the user's code run on the row's data (a filter given text
            # where it wants a number, a sandbox refusal): that row fails, not the run.
            raise RowError(f"the template failed on this row: {exc}") from None


def _columns(names: Sequence[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names)
    return f"the column {quoted}" if len(names) == 1 else f"the columns {quoted}"


@dataclasses.dataclass(frozen=True)
class RequestBuilder:
    """Builds each row's batch line: the chat body from the templates and options."""

    url: ClassVar[str] = ENDPOINT
    model: str
    prompt: RowTemplate
    system: RowTemplate | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: dict[str, Any] | None = None

    def body(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The request body for `row`; RowError if a template fails on it."""
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system.render(row)})
        messages.append({"role": "user", "content": self.prompt.render(row)})
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.response_format is not None:
            body["response_format"] = self.response_format
        return body

    def line(self, custom_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row's batch input line (the OpenAI batch format)."""
        return {"custom_id": custom_id, "method": "POST", "url": self.url, "body": self.body(row)}


@dataclasses.dataclass(frozen=True)
class EmbeddingRequestBuilder:
    """Builds each row's batch line for `--embed`: one column's text, to be embedded."""

    url: ClassVar[str] = embeddings.URL
    model: str
    column: str

    @classmethod
    def checked(cls, model: str, column: str, schema: pa.Schema) -> EmbeddingRequestBuilder:
        """The builder for `column`, which must be a text column of the table."""
        if column not in schema.names:
            raise TableError(
                f"--embed '{column}' is not a column of the table; its columns are: "
                f"{', '.join(schema.names)}"
            )
        kind = schema.field(column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if not (is_text or pa.types.is_string_view(kind) or pa.types.is_null(kind)):
            raise TableError(
                f"--embed '{column}' holds {kind} values; an embedding is made from text: "
                "name a column of text"
            )
        return cls(model, column)

    def body(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The request body for `row`; RowError if its cell holds no text."""
        text = row.get(self.column)
        if text is None:
            raise RowError(f"{_columns([self.column])} is empty (null) in this row")
        if text == "":
            # The API refuses an empty input; caught here, it fails this row alone.
            raise RowError(f"{_columns([self.column])} is empty in this row: no text to embed")
        return {"model": self.model, "input": text}

    def line(self, custom_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row's batch input line (the OpenAI batch format)."""
        return {"custom_id": custom_id, "method": "POST", "url": self.url, "body": self.body(row)}


RowRequests = RequestBuilder | EmbeddingRequestBuilder


def custom_id(
    row: Mapping[str, Any], row_number: int, id_column: str | None, max_chars: int
) -> str:
    """The row's custom_id: its `id_column` value, or its 1-based row number."""
    if id_column is None:
        return str(row_number)
    value = row.get(id_column)
    if value is None or str(value) == "":
        raise RowError(f"the id column '{id_column}' is empty in this row")
    text = str(value)
    if len(text) > max_chars:
        raise RowError(
            f"the id column '{id_column}' holds {len(text)} characters; ids may have "
            f"at most {max_chars}"
        )
    return text


@dataclasses.dataclass(frozen=True)
class RepeatedId:
    """An id that two rows share: the first row that has it and the next one."""

    value: Any
    first_row: int  # row numbers count from 1, as the default custom_id does
    row: int


def repeated_id(ids: Iterable[pa.Array]) -> RepeatedId | None:
    """The first row (in table order) whose id an earlier row already has, or None.

    `ids` is the id column in record batches, so only ids are held, never rows. Null and
    empty ids are left out: each is its own row's error (see `custom_id`).
    """
    chunks = list(ids)
    if not chunks:
        return None
    values = pa.chunked_array(chunks)
    if pa.types.is_dictionary(values.type):  # a categorical column: compare the values
        values = values.cast(values.type.value_type)
    table = pa.table({"id": values, "row": pa.array(range(1, len(values) + 1), pa.int64())})
    present = pc.is_valid(table["id"])
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        present = pc.and_(present, pc.not_equal(table["id"], ""))
    table = table.filter(present)
    # Sorted by id, then row: a row repeats an earlier row's id exactly when the row
    # before it in this order has the same id.
    table = table.take(pc.sort_indices(table, [("id", "ascending"), ("row", "ascending")]))
    if table.num_rows < 2:
        return None
    repeats = pc.equal(table["id"].slice(1), table["id"].slice(0, table.num_rows - 1))
    later_rows = pc.filter(table["row"].slice(1), repeats)
    if len(later_rows) == 0:
        return None
    row = pc.min(later_rows).as_py()
    value = table.filter(pc.equal(table["row"], row))["id"][0]
    first_row = pc.min(table.filter(pc.equal(table["id"], value))["row"]).as_py()
    return RepeatedId(value.as_py(), first_row, row)
