"""Which hostile bodies each route is thrown, by the kind of body it reads.

Cases are named at collection time and built when their test runs (with the ids of the
objects the running server holds), so that collecting the suite stays cheap.

- JSON routes: every whole-body document, and every hostile value at each slot of the
  route's template.
- Multipart routes: hostile multipart envelopes around a valid batch file, and the JSON
  documents sent raw (not multipart: each must be refused). Batch files with the corpus
  on a line are test_batch_files.py's.
- Form routes: hostile urlencoded forms, and the JSON documents.
- Routes that read no body: the JSON documents up to 64 KiB (they must ignore them).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator

from tests.hostile import corpus
from tests.hostile.routes import Route, Template, fill

MAX_IGNORED_BODY_BYTES = 64 * 1024
Build = Callable[[dict[str, str]], corpus.Document]


def _named(route: Route) -> Iterator[tuple[str, Build]]:
    template = route.templates[0]
    if route.kind in ("json", "form", "none", "multipart"):
        for document in corpus.documents(template.body):
            if route.kind == "none" and _is_big(document.name):
                continue
            yield document.name, functools.partial(_document, route, document.name)
    if route.kind == "json":
        for each in route.templates:
            yield from _spliced(each)
    if route.kind == "multipart":
        line = json.dumps(template.body).encode() + b"\n"
        for document in corpus.multipart_bodies(line):
            yield document.name, functools.partial(_as_is, document)
    if route.kind == "form":
        for document in corpus.form_bodies():
            yield document.name, functools.partial(_as_is, document)


def _spliced(template: Template) -> Iterator[tuple[str, Build]]:
    """Every corpus value at every slot of `template`."""
    for slot in template.slots + template.strict_slots:
        where = ".".join(str(key) for key in slot)
        for value in corpus.VALUES:
            name = f"{where}={value.name}"
            is_strict = slot in template.strict_slots
            yield name, functools.partial(_splice, template, slot, value, name, is_strict)


def _splice(
    template: Template,
    slot: tuple[str | int, ...],
    value: corpus.Value,
    name: str,
    is_strict: bool,
    ids: dict[str, str],
) -> corpus.Document:
    body = corpus.splice(fill(template.body, ids), slot, value.raw)
    return corpus.Document(name, body, must_reject=is_strict or not value.is_json)


def _as_is(document: corpus.Document, ids: dict[str, str]) -> corpus.Document:
    return document


def _is_big(document_name: str) -> bool:
    if not document_name.startswith("top-"):
        return False
    value = corpus.VALUES_BY_NAME.get(document_name.removeprefix("top-"))
    return value is not None and len(value.raw) > MAX_IGNORED_BODY_BYTES


def _document(route: Route, name: str, ids: dict[str, str]) -> corpus.Document:
    for document in corpus.documents(fill(route.templates[0].body, ids)):
        if document.name == name:
            if route.kind == "multipart":  # JSON is not a multipart form
                return corpus.Document(name, document.body, document.content_type, True)
            if route.kind != "json":
                return corpus.Document(name, document.body, document.content_type, False)
            return document
    raise KeyError(name)


def case_names(route: Route) -> list[str]:
    return [name for name, _ in _named(route)]


def build(route: Route, name: str, ids: dict[str, str]) -> corpus.Document:
    for case_name, make in _named(route):
        if case_name == name:
            return make(ids)
    raise KeyError(name)
