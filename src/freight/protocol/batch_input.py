"""Validation of batch input files: one streaming pass, problems reported by line number.

Two kinds of problem, as OpenAI's Batch API has them:
- *file problems* (unparseable line, duplicate custom_id, wrong url, mixed models, ...)
  fail the whole batch with `errors.data[]` entries carrying `code`, `message`, `line`;
- *body problems* (a bad parameter inside one line's `body`) fail only that line: it
  becomes an error-file line with `response.status_code` 400 and an OpenAI error body.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from freight.config import LimitSettings
from freight.protocol import endpoints, json_budget
from freight.protocol.openai_wire import BatchError

_FIELDS = ("custom_id", "method", "url", "body")
_BOM = b"\xef\xbb\xbf"
MAX_REPORTED_PROBLEMS = 100


@dataclass(frozen=True)
class TooLong:
    """A line longer than the line limit (its bytes were skipped, not kept)."""

    num_bytes: int


def iter_lines(fh: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, bytes | TooLong]]:
    """Yield (1-based line number, line without its line ending) for non-blank lines.

    Accepts LF and CRLF endings, a UTF-8 byte order mark, blank lines and a missing
    final newline. Never holds more than `max_line_bytes` of one line in memory.
    """
    line_no = 0
    while True:
        chunk = fh.readline(max_line_bytes + 2)  # room for "\r\n"
        if not chunk:
            return
        line_no += 1
        if not chunk.endswith(b"\n") and len(chunk) > max_line_bytes:
            size = len(chunk)
            tail = chunk[-2:]  # the last bytes read, to leave the line ending out
            while chunk and not chunk.endswith(b"\n"):
                chunk = fh.readline(1 << 20)
                size += len(chunk)
                tail = (tail + chunk)[-2:]
            if tail.endswith(b"\n"):
                size -= 2 if tail == b"\r\n" else 1
            yield line_no, TooLong(size)
            continue
        if line_no == 1 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
        chunk = chunk.rstrip(b"\r\n")
        if len(chunk) > max_line_bytes:
            yield line_no, TooLong(len(chunk))
        elif chunk.strip():
            yield line_no, chunk


def same_name(model: str) -> str:
    """No aliases: every model name is its own."""
    return model


def with_canonical_model(
    body: dict[str, Any], model: str, canonical_model: Callable[[str], str]
) -> tuple[dict[str, Any], str]:
    """The body with an alias in `model` replaced by the model's own name, and that name:
    what runs, what the result says and what usage is recorded under (engines/registry.py)."""
    name = canonical_model(model)
    return (body, model) if name == model else ({**body, "model": name}, name)


@dataclass
class AcceptedLine:
    """A line that passed file validation. `error_body` is set if its body is invalid."""

    line: int
    custom_id: str
    url: str
    body: dict[str, Any]
    body_json: str
    model: str | None
    error_body: dict[str, Any] | None
    error_status: int = 400  # the HTTP status the error result carries


class FileValidator:
    """Feeds on lines, collects file problems, and hands back accepted lines."""

    def __init__(
        self,
        endpoint_url: str,
        limits: LimitSettings,
        *,
        has_model: Callable[[str], bool],
        check_model: Callable[[str, str], str | None] = lambda model, url: None,
        canonical_model: Callable[[str], str] = same_name,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.endpoint = endpoints.get(endpoint_url)
        self.limits = limits
        self.has_model = has_model
        self.check_model = check_model
        self.canonical_model = canonical_model
        self.problems: list[BatchError] = []
        self.model: str | None = None
        self.num_lines = 0
        self._seen: set[str] = set()
        self._unknown_models: set[str] = set()
        self.is_truncated = False  # stopped early (too many lines or problems)

    @property
    def is_failed(self) -> bool:
        return bool(self.problems)

    def _problem(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(BatchError(code=code, message=message, param=param, line=line))
        else:
            self.is_truncated = True

    def feed(self, line: int, raw: bytes | TooLong) -> AcceptedLine | None:
        """Validate one line; return it if accepted, else record the problem."""
        self.num_lines += 1
        if self.num_lines > self.limits.max_requests_per_batch:
            self._problem(
                "too_many_tasks",
                f"The file has more than {self.limits.max_requests_per_batch} requests, "
                "the most one batch may hold. Split it into several batches.",
                line,
            )
            self.is_truncated = True
            return None
        if isinstance(raw, TooLong):
            self._problem(
                "line_too_long",
                f"Line {line} is {raw.num_bytes} bytes; the limit is "
                f"{self.limits.max_line_bytes} bytes per line.",
                line,
            )
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._problem(
                "invalid_json_line",
                f"Line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                f"{exc.start + 1} of the line). Batch files must be UTF-8 encoded JSON Lines.",
                line,
            )
            return None
        problem = json_budget.problem(raw, f"Line {line}", self.limits.max_json_depth)
        if problem is not None:
            self._problem("invalid_json_line", problem, line)
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            self._problem("invalid_json_line", "This line is not parseable as valid JSON.", line)
            return None
        except ValueError:  # an integer longer than Python converts (sys.int_info)
            self._problem(
                "invalid_json_line",
                f"Line {line} holds an integer of more than "
                f"{sys.get_int_max_str_digits()} digits, larger than any parameter accepts.",
                line,
            )
            return None
        if not isinstance(obj, dict):
            self._problem(
                "invalid_json_line",
                "This line is not a JSON object; each line must be "
                '{"custom_id", "method", "url", "body"}.',
                line,
            )
            return None
        return self._check_envelope(line, obj)

    def _check_envelope(self, line: int, obj: dict[str, Any]) -> AcceptedLine | None:
        missing = [f for f in _FIELDS if f not in obj]
        if missing:
            self._problem(
                "missing_required_field",
                f"Line {line} is missing the required field '{missing[0]}'. "
                "Each line needs custom_id, method, url and body.",
                line,
                missing[0],
            )
            return None
        extra = sorted(set(obj) - set(_FIELDS))
        if extra:
            self._problem(
                "unexpected_field",
                f"Line {line} has the unexpected field '{extra[0]}'. "
                "Allowed fields: custom_id, method, url, body.",
                line,
                extra[0],
            )
            return None
        custom_id, method, url, body = (obj[f] for f in _FIELDS)
        if not isinstance(custom_id, str) or not custom_id:
            self._problem(
                "invalid_custom_id",
                f"Line {line}: custom_id must be a non-empty string.",
                line,
                "custom_id",
            )
            return None
        if len(custom_id) > self.limits.max_custom_id_chars:
            self._problem(
                "invalid_custom_id",
                f"Line {line}: custom_id is {len(custom_id)} characters; the limit is "
                f"{self.limits.max_custom_id_chars}.",
                line,
                "custom_id",
            )
            return None
        if method != "POST":
            self._problem(
                "invalid_method",
                f"Line {line}: method must be 'POST', not {method!r}.",
                line,
                "method",
            )
            return None
        if url != self.endpoint_url:
            self._problem(
                "url_mismatch",
                f"Line {line}: url {url!r} does not match the batch endpoint "
                f"'{self.endpoint_url}'. Every line must use the batch's endpoint.",
                line,
                "url",
            )
            return None
        if not isinstance(body, dict):
            self._problem("invalid_body", f"Line {line}: body must be a JSON object.", line, "body")
            return None
        if custom_id in self._seen:
            self._problem(
                "duplicate_custom_id",
                f"Line {line}: the custom_id '{custom_id}' is already used by an earlier "
                "line. custom_id values must be unique within a batch.",
                line,
                "custom_id",
            )
            return None
        self._seen.add(custom_id)
        model = body.get("model")
        if isinstance(model, str):
            body, model = with_canonical_model(body, model, self.canonical_model)
            if not self._check_model_name(line, model):
                return None
        # Valid UTF-8 and within the depth budget (checked in `feed`): this cannot fail.
        body_json = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return AcceptedLine(
            line=line,
            custom_id=custom_id,
            url=url,
            body=body,
            body_json=body_json,
            model=model if isinstance(model, str) else None,
            error_body=self._body_error(body, model),
        )

    def _check_model_name(self, line: int, model: str) -> bool:
        if not self.has_model(model):
            if model not in self._unknown_models:
                self._unknown_models.add(model)
                self._problem(
                    "model_not_found",
                    f"Line {line}: the model '{model}' does not exist. "
                    "GET /v1/models lists the available models.",
                    line,
                    "body.model",
                )
            return False
        if self.model is None:
            self.model = model
        elif model != self.model:
            self._problem(
                "model_mismatch",
                f"Line {line}: model '{model}' differs from '{self.model}' used earlier. "
                "A batch file may use only one model.",
                line,
                "body.model",
            )
            return False
        return True

    def _body_error(self, body: dict[str, Any], model: Any) -> dict[str, Any] | None:
        try:
            endpoints.parse_body(self.endpoint, body, in_batch=True)
        except endpoints.BodyError as exc:
            return exc.body()
        problem = self.check_model(model, self.endpoint_url)
        if problem is not None:
            return endpoints.BodyError(problem, param="model", code="model_not_supported").body()
        return None

    def finish(self) -> list[BatchError]:
        if self.num_lines == 0 and not self.problems:
            self._problem("empty_file", "The input file has no requests.", None)
        return self.problems


def first_object(
    fh: BinaryIO, max_line_bytes: int, max_json_depth: int = LimitSettings().max_json_depth
) -> dict[str, Any] | None:
    """The first line that parses as a JSON object, if one does (cheap: reads no further).
    A line over the JSON budget (too deep, not Unicode) is skipped unparsed, as the
    validator refuses it."""
    for _, raw in iter_lines(fh, max_line_bytes):
        if isinstance(raw, TooLong):
            continue
        if json_budget.problem(raw, "a line", max_json_depth) is not None:
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None
