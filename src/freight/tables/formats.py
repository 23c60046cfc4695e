"""Tables on disk: a path's format, its rows in record batches, and an output written as rows land.

Reading streams (pyarrow's CSV and JSON streaming readers, Parquet row groups), so a
table of any length is held one record batch at a time. Writing appends chunk after
chunk and flushes each, so a run that is interrupted leaves the rows written so far;
`rows_written` counts them for `--resume`. CSV, TSV and JSONL can be appended to;
Parquet keeps its footer at the end, so a Parquet output is whole or unreadable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from freight.tables import TableError

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
FORMATS = ("csv", "tsv", "parquet", "jsonl")
APPENDABLE = ("csv", "tsv", "jsonl")
DELIMITERS = {"csv": ",", "tsv": "\t"}
PARQUET_BATCH_ROWS = 8192


def format_of(path: Path, given: str | None = None) -> str:
    """The table format of `path`: `given` (`--format`) if set, else its extension's."""
    if given is not None:
        if given not in FORMATS:
            raise TableError(f"unknown table format '{given}'; use one of {', '.join(FORMATS)}")
        return given
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise TableError(
            f"{path}: cannot tell the table format from its extension "
            f"'{path.suffix}'; use one of {', '.join(EXTENSIONS)}"
        )
    return found


def is_table_path(path: Path) -> bool:
    """Whether `path`'s extension alone makes it a table (a .jsonl may be a batch file)."""
    return EXTENSIONS.get(path.suffix.lower()) in ("csv", "tsv", "parquet")


class TableReader:
    """A table's schema at once, then its rows in record batches, never all of them."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        try:
            if fmt == "parquet":
                self._parquet: pq.ParquetFile | None = pq.ParquetFile(path)
                self._stream: Any = None
                self.schema: pa.Schema = self._parquet.schema_arrow
            else:
                self._parquet = None
                self._stream = _open_stream(path, fmt)
                self.schema = self._stream.schema
        except (OSError, pa.ArrowException) as exc:
            raise TableError(f"cannot read {path} as {fmt}: {exc}") from None
        if len(set(self.schema.names)) != len(self.schema.names):
            raise TableError(f"{path}: column names repeat: {', '.join(self.schema.names)}")

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows in order, one record batch at a time."""
        try:
            if self._parquet is not None:
                yield from self._parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
            else:
                yield from self._stream
        except pa.ArrowException as exc:
            # A streaming reader fixes its column types from the first block; a later row
            # that does not fit them (text in a number column) is only found here.
            raise TableError(f"cannot read {self.path} as {self.format}: {exc}") from None

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self._stream is not None:
            self._stream.close()


def _open_stream(path: Path, fmt: str, columns: list[str] | None = None) -> Any:
    if fmt == "jsonl":
        return pa_json.open_json(path)
    return pa_csv.open_csv(
        path,
        parse_options=pa_csv.ParseOptions(delimiter=DELIMITERS[fmt], newlines_in_values=True),
        # An empty cell is CSV's only way to say "missing": null, as in the other formats
        # (and as the output writes a null).
        convert_options=pa_csv.ConvertOptions(
            strings_can_be_null=True, include_columns=columns or []
        ),
    )


def column_values(path: Path, fmt: str, name: str) -> Iterator[pa.Array]:
    """One column's values in row order, a record batch at a time; the other columns are
    not kept (Parquet does not even read them)."""
    parquet = stream = None
    try:
        if fmt == "parquet":
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[name]):
                yield batch.column(0)
        else:
            stream = _open_stream(path, fmt, [name])
            for batch in stream:
                yield batch.column(name)
    except (OSError, pa.ArrowException) as exc:
        raise TableError(f"cannot read {path} as {fmt}: {exc}") from None
    finally:
        if parquet is not None:
            parquet.close()
        if stream is not None:
            stream.close()


def text_schema(schema: pa.Schema, fmt: str) -> pa.Schema:
    """The schema a table is written with in `fmt`: CSV and TSV hold no nested values, so
    lists and structs become JSON text there."""
    if fmt not in DELIMITERS:
        return schema
    return pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_nested(f.type) else f for f in schema]
    )


class TableWriter:
    """Writes an output table chunk by chunk, in order, flushing each chunk.

    `append`: add rows to what an earlier run wrote (CSV/TSV without a second header).
    """

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, *, append: bool = False) -> None:
        if append and fmt not in APPENDABLE:
            raise TableError(f"a {fmt} output cannot be appended to")
        self.format = fmt
        self.schema = text_schema(schema, fmt)
        self._fh: IO[bytes] = open(path, "ab" if append else "wb")  # noqa: SIM115
        self._csv: pa_csv.CSVWriter | None = None
        self._parquet: pq.ParquetWriter | None = None
        if fmt in DELIMITERS:
            options = pa_csv.WriteOptions(include_header=not append, delimiter=DELIMITERS[fmt])
            self._csv = pa_csv.CSVWriter(self._fh, self.schema, write_options=options)
            self._csv.write_table(self.schema.empty_table())  # the header, even for no rows
        elif fmt == "parquet":
            self._parquet = pq.ParquetWriter(self._fh, self.schema)

    def write(self, table: pa.Table) -> None:
        """Write `table`'s rows after those already written, and flush them to the file."""
        if self._csv is not None:
            self._csv.write_table(_nested_as_json(table, self.schema))
        elif self._parquet is not None:
            self._parquet.write_table(table)
        else:
            for batch in table.to_batches():
                lines = (
                    json.dumps(row, ensure_ascii=False, default=str) + "\n"
                    for row in batch.to_pylist()
                )
                self._fh.write("".join(lines).encode())
        self._fh.flush()

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()
        self._fh.close()


def _nested_as_json(table: pa.Table, schema: pa.Schema) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [None if v is None else json.dumps(v, default=str) for v in table[i].to_pylist()]
            table = table.set_column(i, schema.field(i), pa.array(text, pa.string()))
    return table


def rows_written(path: Path, fmt: str, columns: list[str]) -> int:
    """How many whole rows an earlier run wrote to `path`, whose columns must be `columns`.

    A row cut short when that run was killed (the file does not end with a newline) is
    removed, so the next run writes it again whole.
    """
    if fmt not in APPENDABLE:
        raise TableError(
            f"--resume continues a .csv, .tsv or .jsonl output; a {fmt} file is only "
            "complete once its run has finished (run again without --resume)"
        )
    drop_cut_line(path)
    if path.stat().st_size == 0:
        return 0
    found = _written_columns(path, fmt)
    if found != columns:
        raise TableError(
            f"--resume: {path} has the columns {', '.join(found)}, but this run writes "
            f"{', '.join(columns)}; resume the command that wrote it, or write elsewhere"
        )
    if fmt == "jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    options = pa_csv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()))
    parse = pa_csv.ParseOptions(delimiter=DELIMITERS[fmt], newlines_in_values=True)
    try:
        with pa_csv.open_csv(path, parse_options=parse, convert_options=options) as reader:
            return int(sum(batch.num_rows for batch in reader))
    except pa.ArrowException as exc:
        raise TableError(f"--resume: cannot read {path}: {exc}") from None


def _written_columns(path: Path, fmt: str) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline()
    if fmt == "jsonl":
        try:
            return list(json.loads(first))
        except (ValueError, TypeError):
            return []
    try:
        return list(
            pa_csv.read_csv(
                pa.py_buffer(first),
                parse_options=pa_csv.ParseOptions(delimiter=DELIMITERS[fmt]),
            ).column_names
        )
    except pa.ArrowException:
        return []


def drop_cut_line(path: Path, block: int = 65536) -> None:
    """Truncate `path` after its last newline."""
    with open(path, "r+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - block)
            fh.seek(start)
            newline = fh.read(position - start).rfind(b"\n")
            if newline >= 0:
                if start + newline + 1 != end:
                    fh.truncate(start + newline + 1)
                return
            position = start
        fh.truncate(0)
