"""Adversarial request bodies, generated in code: what a key holder can send to hurt a server.

Three kinds:

- `VALUES`: JSON values (some not valid JSON at all), as bytes, spliced into an otherwise
  plausible request body where the server has to parse and check them: nesting at several
  depths, huge and non-finite numbers, long strings, many and duplicate keys, lone
  surrogates, invalid UTF-8.
- `documents(template)`: whole bodies: every value as the top level, plus empty bodies,
  non-object tops, a BOM, trailing garbage, truncation, wrong content-types.
- `multipart_bodies()` / `FORM_BODIES`: hostile multipart uploads and urlencoded forms.

Each case says whether a strict JSON parser (RFC 8259, UTF-8) accepts it, so a test can
insist that what is not JSON is refused. Nothing here is big in git: the largest bodies
(several MB) are built when first used.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# 65: just past the depth budget; 900: under Python's recursion limit, so the standard
# library parses it and every recursive step after that (dumps, schema checks) may not.
DEPTHS = (65, 900, 1_000, 5_000, 50_000, 200_000)
LONG_STRING_BYTES = 4 * 1024 * 1024  # several MB, within the default 10 MiB body limit
NUM_MANY_KEYS = 100_000
NUM_BIG_INT_DIGITS = 100_000
SLOT = "\x00hostile-slot\x00"  # a placeholder no template contains


@dataclass(frozen=True)
class Value:
    """A JSON value's bytes to splice into a request body (built on first use)."""

    name: str
    build: Callable[[], bytes]
    is_json: bool  # a strict parser accepts it (no NaN, valid UTF-8, no lone surrogate bytes)

    @functools.cached_property
    def raw(self) -> bytes:
        return self.build()


@dataclass(frozen=True)
class Document:
    """A whole request body and the content-type it is sent with (None: no header)."""

    name: str
    body: bytes
    content_type: str | None = "application/json"
    must_reject: bool = False  # not a JSON object in strict JSON: a JSON route must refuse it


def _deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _many_keys(num: int) -> bytes:
    return b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(num)) + b"}"


def _values() -> list[Value]:
    values = []
    for depth in DEPTHS:
        values.append(Value(f"deep-array-{depth}", functools.partial(_deep_array, depth), True))
        values.append(Value(f"deep-object-{depth}", functools.partial(_deep_object, depth), True))
    values += [
        # A JSON Schema whose checking recurses per level (the json_schema slot).
        Value("deep-schema-items-300", lambda: b'{"items":' * 300 + b"{}" + b"}" * 300, True),
        Value("int-100000-digits", lambda: b"9" * NUM_BIG_INT_DIGITS, True),
        Value("negative-int-100000-digits", lambda: b"-" + b"1" * NUM_BIG_INT_DIGITS, True),
        Value("float-1e999", lambda: b"1e999", True),
        Value("float-minus-1e999", lambda: b"-1e999", True),
        Value("float-100000-digit-exponent", lambda: b"1e" + b"9" * NUM_BIG_INT_DIGITS, True),
        Value("minus-zero", lambda: b"-0", True),
        Value("minus-zero-float", lambda: b"-0.0", True),
        Value("NaN-literal", lambda: b"NaN", False),
        Value("Infinity-literal", lambda: b"Infinity", False),
        Value("minus-Infinity-literal", lambda: b"-Infinity", False),
        Value("long-string-4MB", lambda: b'"' + b"x" * LONG_STRING_BYTES + b'"', True),
        Value(
            "long-string-of-words-4MB",
            lambda: b'"' + b"ab " * (LONG_STRING_BYTES // 3) + b'"',
            True,
        ),
        Value("long-string-of-escapes", lambda: b'"' + b"\\u00e9" * 500_000 + b'"', True),
        Value("wide-array-1000000", lambda: b"[" + b"0," * 999_999 + b"0]", True),
        Value("many-keys-100000", lambda: _many_keys(NUM_MANY_KEYS), True),
        Value("duplicate-keys", lambda: b'{"a":1,"a":{"b":2},"a":[3]}', True),
        Value("many-duplicate-keys", lambda: b"{" + b'"a":1,' * NUM_MANY_KEYS + b'"a":1}', True),
        Value("lone-high-surrogate-escape", lambda: b'"x\\ud800y"', True),
        Value("lone-low-surrogate-escape", lambda: b'"\\udc00"', True),
        Value("reversed-surrogate-pair-escape", lambda: b'"\\udc00\\ud800"', True),
        Value("raw-surrogate-bytes", lambda: b'"x\xed\xa0\x80y"', False),
        Value("invalid-utf8-byte", lambda: b'"x\xffy"', False),
        Value("overlong-utf8", lambda: b'"\xc0\xaf"', False),
        Value("truncated-utf8-sequence", lambda: b'"\xe2\x82"', False),
        Value("nul-escape", lambda: b'"a\\u0000b"', True),
        Value("raw-control-character", lambda: b'"a\x01b"', False),
        Value("empty-string", lambda: b'""', True),
        Value("trailing-newline", lambda: b'"a\\n"', True),  # `$` matches before a final \n
        Value("line-separators", lambda: b'"a\\u2028b\\u2029c\\r\\nd"', True),
        Value("null", lambda: b"null", True),
        Value("empty-object", lambda: b"{}", True),
        Value("unterminated-string", lambda: b'"abc', False),
    ]
    return values


VALUES: list[Value] = _values()
VALUES_BY_NAME = {v.name: v for v in VALUES}


def splice(template: Any, path: tuple[str | int, ...], value: bytes) -> bytes:
    """`template` as compact JSON with the value at `path` replaced by `value`'s bytes."""
    doc = json.loads(json.dumps(template))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, list) and path[-1] == len(parent):
        parent.append(SLOT)
    else:
        parent[path[-1]] = SLOT
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    marker = json.dumps(SLOT).encode()
    assert text.count(marker) == 1
    return text.replace(marker, value)


def documents(template: dict[str, Any]) -> Iterator[Document]:
    """Whole hostile bodies for a route that reads JSON; `template` is a body it accepts."""
    valid = json.dumps(template, separators=(",", ":")).encode()
    for value in VALUES:
        is_object = value.is_json and value.raw.startswith(b"{")
        yield Document(f"top-{value.name}", value.raw, must_reject=not is_object)
    invalid = [
        ("empty-body", b""),
        ("whitespace-body", b" \r\n\t "),
        ("top-array", b"[" + valid + b"]"),
        ("top-string", json.dumps(valid.decode()).encode()),
        ("top-number", b"42"),
        ("top-true", b"true"),
        ("trailing-garbage", valid + b"}}garbage"),
        ("two-objects", valid + b" " + valid),
        ("trailing-nul", valid + b"\x00"),
        ("truncated-half", valid[: len(valid) // 2]),
        ("truncated-last-byte", valid[:-1]),
        ("unclosed-deep-object", b'{"a":' * 10_000),
        ("unclosed-deep-array", b"[" * 100_000),
        ("closers-only", b"]" * 10_000),
        ("comments", b"/* hi */" + valid),
        ("single-quotes", valid.replace(b'"', b"'")),
    ]
    yield from (Document(name, body, must_reject=True) for name, body in invalid)
    # Other encodings and content-types: refusing them is right, accepting them is no harm.
    yield from [
        Document("bom-then-object", b"\xef\xbb\xbf" + valid),
        Document("utf16-bom-then-object", b"\xff\xfe" + valid.decode().encode("utf-16-le")),
        Document("utf16-without-bom", valid.decode().encode("utf-16-le")),
        Document("utf32", valid.decode().encode("utf-32")),
        Document("valid-as-text-plain", valid, content_type="text/plain"),
        Document("valid-without-content-type", valid, content_type=None),
        Document("valid-as-form", valid, content_type="application/x-www-form-urlencoded"),
        Document("valid-as-multipart-without-boundary", valid, content_type="multipart/form-data"),
        Document("valid-as-json-utf16", valid, content_type="application/json; charset=utf-16"),
        Document("valid-as-garbage-type", valid, content_type="json/../;;;==; charset=nope"),
        Document("valid-as-long-type", valid, content_type="application/json;" + "a=b;" * 2000),
        Document("valid", valid),
    ]


# --- multipart and urlencoded forms --------------------------------------------------------

BOUNDARY = "hostile-boundary-7d1e"


def _part(name: str, data: bytes, filename: str | bytes | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'.encode()
    if filename is not None:
        raw = filename.encode() if isinstance(filename, str) else filename
        disposition += b'; filename="' + raw + b'"'
    return (
        b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n"
        + data + b"\r\n"
    )  # fmt: skip


def multipart(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_bodies(file_content: bytes) -> Iterator[Document]:
    """Hostile multipart envelopes around a valid batch file `file_content`."""
    purpose = _part("purpose", b"batch")
    a_file = _part("file", file_content, "in.jsonl")
    yield from [
        Document("multipart-valid", multipart(purpose, a_file), MULTIPART_TYPE),
        Document(
            "multipart-two-file-parts",
            multipart(purpose, a_file, _part("file", file_content, "second.jsonl")),
            MULTIPART_TYPE,
        ),
        Document(
            "multipart-file-without-filename",
            multipart(purpose, _part("file", b"x")),
            MULTIPART_TYPE,
        ),
        Document("multipart-no-parts", multipart(), MULTIPART_TYPE),
        Document("multipart-unclosed", multipart(purpose, a_file, close=False), MULTIPART_TYPE),
        Document("multipart-truncated", multipart(purpose, a_file)[:-30], MULTIPART_TYPE),
        Document(
            "multipart-wrong-boundary",
            multipart(purpose, a_file),
            "multipart/form-data; boundary=something-else",
        ),
        Document(
            "multipart-empty-boundary", multipart(purpose, a_file), "multipart/form-data; boundary="
        ),
        Document(
            "multipart-huge-field",
            multipart(_part("purpose", b"b" * (2 * 1024 * 1024)), a_file),
            MULTIPART_TYPE,
        ),
        Document(
            "multipart-10000-fields",
            multipart(*[_part(f"f{i}", b"v") for i in range(10_000)], purpose, a_file),
            MULTIPART_TYPE,
        ),
        Document(
            "multipart-hostile-filename",
            multipart(purpose, _part("file", file_content, "../../\x1b[31m\u202eevil\r\n.jsonl")),
            MULTIPART_TYPE,
        ),
        Document(
            "multipart-invalid-utf8-filename",
            multipart(purpose, _part("file", file_content, b"\xff\xfe.jsonl")),
            MULTIPART_TYPE,
        ),
        Document(
            "multipart-4000-byte-header",
            multipart(purpose, _part("file", file_content, "f" * 4000 + ".jsonl")),
            MULTIPART_TYPE,
        ),
        Document(
            "multipart-invalid-utf8-purpose",
            multipart(_part("purpose", b"\xff\xfe"), a_file),
            MULTIPART_TYPE,
        ),
        Document("multipart-garbage", b"\x00\xff" * 1000, MULTIPART_TYPE),
    ]


def form_bodies() -> Iterator[Document]:
    """Hostile application/x-www-form-urlencoded bodies (the dashboard's sign-in form)."""
    form = "application/x-www-form-urlencoded"
    yield from [
        Document("form-valid", b"api_key=sk-not-a-key", form),
        Document("form-empty", b"", form),
        Document("form-long-value", b"api_key=" + b"k" * LONG_STRING_BYTES, form),
        Document("form-invalid-utf8-escape", b"api_key=%ff%fe%ed%a0%80", form),
        Document("form-raw-invalid-utf8", b"api_key=\xff\xfe", form),
        Document("form-nul", b"api_key=a%00b", form),
        Document("form-100000-fields", b"&".join(b"f%d=v" % i for i in range(100_000)), form),
        Document("form-100000-repeats", b"api_key=a&" * 100_000, form),
        Document("form-broken-escapes", b"api_key=%%%zz%", form),
        Document("form-as-json", b'{"api_key": "x"}', "application/json"),
    ]
