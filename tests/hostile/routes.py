"""Every route that takes a request body, read from the app itself, and how to judge answers.

`body_routes()` builds the app and lists each POST/PUT/PATCH route with the kind of body
it reads (JSON, multipart, form, or none), from the OpenAPI document where the route is
in it and from the route itself otherwise (the dashboard). A new route is thrown the
corpus without anyone listing it here; `TEMPLATES` adds, for the routes it knows, a body
the route accepts and the places in it where hostile values go (a test fails when a new
body-reading route has no template, so that it gets that too).
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from freight.api.errors import is_anthropic_path
from freight.api.openapi import AnthropicError, OpenAIError
from freight.app import create_app
from freight.service.runtime import Service
from tests.conftest import make_settings

BodyKind = Literal["json", "multipart", "form", "none"]
# Routes outside the OpenAPI document that read their body themselves.
UNDOCUMENTED_BODIES: dict[tuple[str, str], BodyKind] = {("POST", "/ui/batches"): "multipart"}
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
MESSAGE = {"model": "echo", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


@dataclass(frozen=True)
class Template:
    """A body the route accepts (`{name}` strings are filled from seeded ids), the paths
    in it where a hostile value goes, and those where no corpus value is acceptable."""

    body: dict[str, Any]
    slots: tuple[tuple[str | int, ...], ...]
    strict_slots: tuple[tuple[str | int, ...], ...] = ()


STRUCTURED_CHAT = {
    **CHAT,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}},
    },
}
BATCH_LINE = {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
# The first template of a route is the one its whole-body documents are made from.
TEMPLATES: dict[tuple[str, str], tuple[Template, ...]] = {
    ("POST", "/v1/chat/completions"): (
        Template(CHAT, (("messages", 0, "content"),)),
        Template(STRUCTURED_CHAT, (("response_format", "json_schema", "schema"),)),
    ),
    ("POST", "/v1/completions"): (
        Template({"model": "echo", "prompt": "hi", "max_tokens": 4}, (("prompt",),)),
    ),
    ("POST", "/v1/responses"): (
        Template({"model": "echo", "input": "hi", "max_output_tokens": 4}, (("input",),)),
    ),
    ("POST", "/v1/embeddings"): (Template({"model": "echo", "input": "hi"}, (("input",),)),),
    ("POST", "/v1/messages"): (Template(MESSAGE, (("messages", 0, "content"),)),),
    ("POST", "/v1/batches"): (
        Template(
            {
                "input_file_id": "{file_id}",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"k": "v"},
            },
            (("metadata", "k"),),
        ),
    ),
    ("POST", "/v1/batches/estimate"): (
        Template({"input_file_id": "{file_id}"}, (("input_file_id",),)),
    ),
    ("POST", "/v1/batches/{batch_id}/retry"): (
        Template({"include": ["invalid_request"]}, (("include",), ("include", 0))),
    ),
    ("POST", "/v1/messages/batches"): (
        Template(
            {"requests": [{"custom_id": "r1", "params": MESSAGE}]},
            (("requests", 0, "params"), ("requests", 0, "params", "messages", 0, "content")),
            # A custom_id is 1 to 64 of [a-zA-Z0-9_-]: nothing in the corpus is one.
            strict_slots=(("requests", 0, "custom_id"),),
        ),
    ),
    ("POST", "/v1/webhook_endpoints"): (
        Template(
            {"url": "http://127.0.0.1:9/hook", "event_types": ["batch.expired"], "name": "n"},
            (("name",), ("url",)),
        ),
    ),
    ("POST", "/v1/webhook_endpoints/{endpoint_id}"): (Template({"name": "n"}, (("name",),)),),
    ("POST", "/v1/webhook_endpoints/{endpoint_id}/test"): (
        Template({"event_type": "batch.completed"}, (("event_type",),)),
    ),
    ("POST", "/ui/login"): (Template({"api_key": "sk-none"}, ()),),
    # Multipart routes: the template is one batch-file line (the envelope is the corpus
    # there; test_batch_files.py puts the values on lines).
    ("POST", "/v1/files"): (Template(BATCH_LINE, ()),),
    ("POST", "/ui/batches"): (Template(BATCH_LINE, ()),),
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {name} path parameters
    kind: BodyKind

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def templates(self) -> tuple[Template, ...]:
        return TEMPLATES.get((self.method, self.path), (Template({"hostile": 1}, ()),))

    def url(self, ids: dict[str, str]) -> str:
        return self.path.format_map(_Ids(ids))


class _Ids(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "hostile_unknown_id"


def fill(template: Any, ids: dict[str, str]) -> Any:
    """`template` with `{name}` strings replaced by the seeded ids."""
    if isinstance(template, dict):
        return {k: fill(v, ids) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, ids) for v in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return ids.get(template[1:-1], template)
    return template


@functools.cache
def body_routes() -> tuple[Route, ...]:
    """Every POST/PUT/PATCH route of the app, with the kind of body it reads."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(make_settings(Path(tmp) / "home", default_model="echo"))
        try:
            app = create_app(svc)
            operations = app.openapi()["paths"]
            found = []
            for route in app.routes:
                if not isinstance(route, APIRoute):
                    continue
                for method in sorted(route.methods & {"POST", "PUT", "PATCH"}):
                    documented = operations.get(route.path, {}).get(method.lower())
                    found.append(Route(method, route.path, _kind(route, method, documented)))
        finally:
            svc.db.dispose()
    return tuple(found)


def _kind(route: APIRoute, method: str, documented: dict[str, Any] | None) -> BodyKind:
    if documented is not None:
        content = documented.get("requestBody", {}).get("content", {})
        if "multipart/form-data" in content:
            return "multipart"
        if "application/x-www-form-urlencoded" in content:
            return "form"
        return "json" if content else "none"
    if (method, route.path) in UNDOCUMENTED_BODIES:
        return UNDOCUMENTED_BODIES[(method, route.path)]
    if route.body_field is None:
        return "none"
    form_fields = type(route.body_field.field_info).__name__ in ("Form", "File")
    return "form" if form_fields else "json"


# --- judging answers --------------------------------------------------------------------------


def strict_json(text: str) -> Any:
    """Parse as RFC 8259 JSON: NaN and Infinity are not JSON (JavaScript clients choke)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def answer_problems(route: Route, response: httpx.Response, *, must_reject: bool) -> list[str]:
    """What is wrong with the server's answer to one hostile request."""
    status = response.status_code
    problems = []
    if status >= 500:
        problems.append(f"answered {status} (a server error): {response.text[:300]}")
    if must_reject and status < 400 and route.kind != "none":
        problems.append(f"accepted it ({status}): the body is not a JSON object")
    is_api = route.path.startswith("/v1/")
    if is_api and status >= 400:
        problems += _error_shape_problems(route.path, response)
    elif is_api and "json" in response.headers.get("content-type", ""):
        try:
            strict_json(response.text)
        except ValueError as exc:
            problems.append(f"its {status} body is not strict JSON ({exc}): {response.text[:200]}")
    elif (
        not is_api
        and 400 <= status < 500
        and "text/html" not in response.headers.get("content-type", "")
    ):
        # The dashboard's own errors are pages; what fails before a page handler runs
        # (a form the parser refuses) gets the app's generic error shape.
        problems += _error_shape_problems(route.path, response)
    signed_out = status in (302, 303) and response.headers.get("location") == "/ui/login"
    if not is_api and route.kind != "none" and signed_out:
        problems.append("the dashboard sent the signed-in client to the sign-in form")
    return problems


def _error_shape_problems(path: str, response: httpx.Response) -> list[str]:
    shape: type[BaseModel] = AnthropicError if is_anthropic_path(path) else OpenAIError
    try:
        shape.model_validate(strict_json(response.text))
    except (ValueError, ValidationError) as exc:
        return [
            f"its {response.status_code} is not in {shape.__name__}'s shape ({exc!s:.200}): "
            f"{response.text[:300]}"
        ]
    return []
