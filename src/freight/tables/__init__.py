"""Tables in, tables out: rows become batch request lines, and answers join back to rows.

`formats` reads and writes CSV, TSV, Parquet and JSONL-of-records in record batches;
`prompts` turns a row into a chat request through a sandboxed Jinja2 template;
`answers` says which columns an answer becomes and turns a result line into them;
`job` puts them together: a table's rows as request lines, result lines joined back.
`freight run` on a table (service/table_run.py), `freight batches create/wait --table`
(service/table_batches.py) and `freight.map` all use `job`; everything between the
request lines and the result lines is the ordinary batch machinery.
"""

from freight.errors import InvalidRequest


class TableError(InvalidRequest):
    """The table or the options given for it cannot be run."""
