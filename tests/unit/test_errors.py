"""The error tree (errors.py): every error Freight raises toward a user is a FreightError
that says, in its class, how it reaches the user; the API error handler and the worker's
line writer render it from those attributes alone."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi import Body, FastAPI

import freight
import freight.upstream.provider_batches  # defines FreightErrors of its own
from freight.api import errors as api_errors
from freight.api.json_bodies import JsonBudget
from freight.config import Settings
from freight.engines.base import EngineDied, RequestRejected
from freight.engines.pool import EnginePool
from freight.errors import FreightError
from freight.protocol import anthropic_wire
from freight.protocol.body_errors import BodyError
from freight.store.batch_requests import ClaimedRequest, Outcome
from freight.store.statuses import RequestStatus
from freight.worker import runner

OPENAI_TYPES = {"invalid_request_error", "rate_limit_error", "server_error"}
LINE_CODE = re.compile(r"^[a-z]+(_[a-z]+)*$")
# Exceptions that never reach a user as an error: control flow inside one module.
INTERNAL = {
    "LoginRequired",  # web/session.py: the dashboard answers with its login form
    "_HeadTooLarge",  # api/slow_clients.py: becomes a 431 written by the protocol itself
    "RowError",  # tables/prompts.py: its message becomes the row's `error` cell
}


def every_freight_error() -> list[type[FreightError]]:
    found: list[type[FreightError]] = []
    todo: list[type[FreightError]] = [FreightError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_freight_error_has_a_status_both_api_types_and_a_line_code() -> None:
    classes = every_freight_error()
    assert {RequestRejected, EngineDied, BodyError} <= set(classes)
    for cls in classes:
        name = cls.__qualname__
        assert isinstance(cls.status_code, int) and 400 <= cls.status_code <= 599, name
        assert cls.openai_type in OPENAI_TYPES, name
        # Anthropic's SDK picks its exception class by status: the type must agree.
        assert cls.anthropic_type == anthropic_wire.error_type_for(cls.status_code), name
        assert LINE_CODE.match(cls.line_code), name
        assert (cls.__dict__.get("__doc__") or "").strip(), f"{name} has no default message"


def test_no_exception_outside_the_tree_reaches_a_user() -> None:
    """A class deriving straight from Exception would need its own translation again."""
    outside = []
    for path in Path(freight.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name not in INTERNAL | {"FreightError"}:
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & {"Exception", "BaseException"}:
                    outside.append(f"{path.name}: {node.name}")
    assert outside == []


# --- rendering: what each path answered before the tree, byte for byte -----------------

CONTEXT = "The prompt (3000 tokens) plus max_tokens (100) exceeds the context length 2048."


def rejected() -> FreightError:
    return RequestRejected(CONTEXT, code="context_length_exceeded")


def rejected_upstream() -> FreightError:
    message = "upstream http://u/v1 answered HTTP 404: no such model"
    return RequestRejected(message, code="upstream_error", upstream_status=404)


def died() -> FreightError:
    return EngineDied("the vLLM engine for m died: EngineCore exited")


def body_error() -> FreightError:
    return BodyError("Missing required parameter: 'messages'.", param="messages")


async def _post(app: Any, path: str, content: bytes = b"") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, content=content)


def respond(path: str, exc: FreightError) -> tuple[int, dict[str, Any]]:
    app = FastAPI()
    api_errors.install(app)

    async def fail() -> None:
        raise exc

    app.add_api_route(path, fail, methods=["POST"])
    response = asyncio.run(_post(app, path))
    body = response.json()
    if path == "/v1/messages":
        assert body.pop("request_id").startswith("req_")
    return response.status_code, body


def openai(message: str, kind: str, param: str | None = None, code: str | None = None) -> Any:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def claude(message: str, kind: str) -> Any:
    return {"type": "error", "error": {"type": kind, "message": message}}


UPSTREAM_404 = "upstream http://u/v1 answered HTTP 404: no such model"
DIED = "the vLLM engine for m died: EngineCore exited"
MISSING = "Missing required parameter: 'messages'."


@pytest.mark.parametrize(
    ("make", "chat", "messages"),
    [
        (
            rejected,
            (400, openai(CONTEXT, "invalid_request_error", code="context_length_exceeded")),
            (400, claude(CONTEXT, "invalid_request_error")),
        ),
        (  # a real-time caller gets a 400 whatever the upstream answered
            rejected_upstream,
            (400, openai(UPSTREAM_404, "invalid_request_error", code="upstream_error")),
            (400, claude(UPSTREAM_404, "invalid_request_error")),
        ),
        (
            died,
            (503, openai(f"{DIED}. Retry the request.", "server_error")),
            (503, claude(f"{DIED}. Retry the request.", "overloaded_error")),
        ),
        (
            body_error,
            (400, openai(MISSING, "invalid_request_error", param="messages")),
            (400, claude(MISSING, "invalid_request_error")),
        ),
    ],
)
def test_the_api_handler_renders_an_error_from_its_own_attributes(
    make: Any, chat: Any, messages: Any
) -> None:
    assert respond("/v1/chat/completions", make()) == chat
    assert respond("/v1/messages", make()) == messages


class FailingPool:
    """An EnginePool whose engine raises `error` for every request."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get(self, model: str) -> Any:
        error = self.error

        class Engine:
            async def generate(self, request: Any) -> Any:
                raise error

        return Engine()


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def run_line(url: str, body: dict[str, Any], error: Exception) -> Outcome | runner.Transient:
    claimed = ClaimedRequest("req_1", "batch_1", 1, "c1", url, json.dumps(body), attempts=1)
    pool = cast(EnginePool, FailingPool(error))
    return asyncio.run(runner.execute(claimed, pool, runner.SharedResults()))


def line(outcome: Outcome | runner.Transient) -> tuple[int | None, Any]:
    assert isinstance(outcome, Outcome) and outcome.status == RequestStatus.ERRORED
    assert outcome.response_json is not None and outcome.error_json is None
    return outcome.status_code, json.loads(outcome.response_json)


def test_the_line_writer_renders_a_rejected_request_from_its_own_attributes() -> None:
    chat = run_line("/v1/chat/completions", CHAT, rejected())
    assert line(chat) == (
        400,
        openai(CONTEXT, "invalid_request_error", code="context_length_exceeded"),
    )
    assert line(run_line("/v1/messages", MESSAGE, rejected())) == (
        400,
        claude(CONTEXT, "invalid_request_error"),
    )


def test_a_line_keeps_the_status_an_upstream_answered() -> None:
    chat = run_line("/v1/chat/completions", CHAT, rejected_upstream())
    assert line(chat) == (
        404,
        openai(UPSTREAM_404, "invalid_request_error", code="upstream_error"),
    )
    assert line(run_line("/v1/messages", MESSAGE, rejected_upstream())) == (
        404,
        claude(UPSTREAM_404, "not_found_error"),
    )


def test_a_dead_engine_is_retried_not_written_and_its_reason_has_no_api_advice() -> None:
    outcome = run_line("/v1/chat/completions", CHAT, died())
    assert outcome == runner.Transient("req_1", DIED)


def test_the_line_writer_renders_a_body_error_from_its_own_attributes() -> None:
    # An empty prompt list passes the request model; the endpoint refuses it.
    never_run = RuntimeError("the engine is never asked")
    outcome = run_line("/v1/completions", {"model": "m", "prompt": []}, never_run)
    assert line(outcome) == (
        400,
        openai("prompt must not be empty", "invalid_request_error", param="prompt"),
    )


def test_a_body_refused_as_it_arrives_is_rendered_like_every_freight_error() -> None:
    """The JSON budget raises from `receive`, inside FastAPI's body reading, which chains
    it to a 400 of its own: the handler renders the FreightError, code and all."""
    app = FastAPI()
    api_errors.install(app)

    async def echo(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return body

    app.add_api_route("/v1/chat/completions", echo, methods=["POST"])
    settings = SimpleNamespace(limits=SimpleNamespace(max_json_depth=4))
    budgeted = JsonBudget(app, cast(Settings, settings))
    response = asyncio.run(_post(budgeted, "/v1/chat/completions", b'{"a": [[[[[1]]]]]}'))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        None,
        "invalid_body",
    )
    assert "nest" in error["message"]
