"""Every parameter of the parity table through the API: each refused one is a 400 that
names it, each supported or ignored one is accepted, and each one's `sample` is sent with
and without it. A supported parameter must change the requests the engine receives
(recorded by the server's engine pool) or the answer; an ignored one must leave the
engine's requests as they were. The parameters of files and batches show in the object
created. (The echo engine and the embeddings model: what is checked is Freight's
handling of the parameter.)

The acceptance test sends each parameter as a client typically would (`ACCEPTED`); the
effect tests send the table's samples, some of which the echo engine refuses after
receiving them (`auto` tool choice needs a tool-call parser).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from freight.config import DEFAULT_EMBEDDING_MODEL, ModelSettings, Settings
from freight.engines.base import EmbeddingEngine, EmbeddingRequest, Engine, GenerationRequest
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry, find_minilm_dir
from freight.protocol import sdk_parity
from freight.service.runtime import Service
from tests.conftest import LiveServer, chat_line, make_settings, wait_for_batch
from tests.sdk import output_lines

MESSAGES = [{"role": "user", "content": "hi"}]
BASE_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "echo", "messages": MESSAGES},
    "/v1/completions": {"model": "echo", "prompt": "hi"},
    "/v1/responses": {"model": "echo", "input": "hi"},
    "/v1/embeddings": {"model": DEFAULT_EMBEDDING_MODEL, "input": "hi"},
    "/v1/messages": {"model": "echo", "max_tokens": 4, "messages": MESSAGES},
}
SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
CHAT_TOOL = {"type": "function", "function": {"name": "f", "parameters": SCHEMA}}
STREAM_WITH_USAGE = {"stream": True, "stream_options": {"include_usage": True}}
# What each accepted parameter is sent as (several need a partner: a tool_choice its tool).
ACCEPTED: dict[str, dict[str, dict[str, Any]]] = {
    "/v1/chat/completions": {
        "frequency_penalty": {"frequency_penalty": 0.5},
        "max_completion_tokens": {"max_completion_tokens": 4},
        "max_tokens": {"max_tokens": 4},
        "metadata": {"metadata": {"k": "v"}},
        "n": {"n": 2},
        "parallel_tool_calls": {"parallel_tool_calls": False},
        "presence_penalty": {"presence_penalty": 0.5},
        "prompt_cache_key": {"prompt_cache_key": "k"},
        "response_format": {"response_format": {"type": "json_object"}},
        "safety_identifier": {"safety_identifier": "u"},
        "seed": {"seed": 1},
        "service_tier": {"service_tier": "flex"},
        "stop": {"stop": ["x"]},
        "store": {"store": False},
        "stream": {"stream": True},
        "stream_options": STREAM_WITH_USAGE,
        "temperature": {"temperature": 0.5},
        "tool_choice": {"tools": [CHAT_TOOL], "tool_choice": "required"},
        "tools": {"tools": [CHAT_TOOL], "tool_choice": "none"},
        "top_p": {"top_p": 0.5},
        "user": {"user": "u"},
    },
    "/v1/completions": {
        "echo": {"echo": True},
        "frequency_penalty": {"frequency_penalty": 0.5},
        "max_tokens": {"max_tokens": 4},
        "n": {"n": 2},
        "presence_penalty": {"presence_penalty": 0.5},
        "seed": {"seed": 1},
        "stop": {"stop": ["x"]},
        "stream": {"stream": True},
        "stream_options": STREAM_WITH_USAGE,
        "temperature": {"temperature": 0.5},
        "top_p": {"top_p": 0.5},
        "user": {"user": "u"},
    },
    "/v1/responses": {
        "instructions": {"instructions": "Be brief."},
        "max_output_tokens": {"max_output_tokens": 4},
        "metadata": {"metadata": {"k": "v"}},
        "parallel_tool_calls": {"parallel_tool_calls": False},
        "prompt_cache_key": {"prompt_cache_key": "k"},
        "safety_identifier": {"safety_identifier": "u"},
        "service_tier": {"service_tier": "flex"},
        "store": {"store": False},
        "stream": {"stream": True},
        "temperature": {"temperature": 0.5},
        "text": {"text": {"format": {"type": "json_object"}}},
        "top_p": {"top_p": 0.5},
        "user": {"user": "u"},
    },
    "/v1/embeddings": {
        "dimensions": {"dimensions": 384},
        "encoding_format": {"encoding_format": "base64"},
        "user": {"user": "u"},
    },
    "/v1/messages": {
        "cache_control": {"cache_control": {"type": "ephemeral"}},
        "metadata": {"metadata": {"user_id": "u"}},
        "output_config": {
            "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": SCHEMA}}
        },
        "service_tier": {"service_tier": "auto"},
        "stop_sequences": {"stop_sequences": ["x"]},
        "stream": {"stream": True},
        "system": {"system": "Be brief."},
        "tool_choice": {
            "tools": [{"name": "f", "input_schema": SCHEMA}],
            "tool_choice": {"type": "any"},
        },
        "tools": {
            "tools": [{"name": "f", "input_schema": SCHEMA}],
            "tool_choice": {"type": "none"},
        },
    },
}
REFUSED = [
    (method, param)
    for method in sdk_parity.METHODS
    for param in method.params
    if param.support == sdk_parity.R
]
ACCEPTED_PARAMS = [
    (method, param)
    for method in sdk_parity.METHODS
    if method.url in BASE_BODIES
    for param in method.params
    if param.support != sdk_parity.R and param.name not in BASE_BODIES[method.url]
]


def test_every_parameter_has_a_request_to_send() -> None:
    assert {method.url for method, _ in REFUSED} <= BASE_BODIES.keys()
    missing = [
        (method.url, param.name)
        for method, param in ACCEPTED_PARAMS
        if param.header is None and param.name not in ACCEPTED[method.url]
    ]
    assert missing == []


def test_refused_parameters_are_a_400_naming_them(echo_server: LiveServer) -> None:
    unnamed = []
    with httpx.Client(base_url=echo_server.base_url) as client:
        for method, param in REFUSED:
            body = {**BASE_BODIES[method.url], param.name: param.sample}
            response = client.post(method.url, json=body)
            assert response.status_code == 400, (method.path, param.name, response.text)
            error = response.json()["error"]
            is_named = param.name in error["message"]
            if method.sdk == "openai":
                is_named = is_named and (error.get("param") or "").startswith(param.name)
            if not is_named:
                unnamed.append((method.path, param.name, error))
    assert unnamed == []


def test_supported_and_ignored_parameters_are_accepted(echo_server: LiveServer) -> None:
    refused = []
    with httpx.Client(base_url=echo_server.base_url, timeout=120) as client:
        for url, body in BASE_BODIES.items():  # the base bodies alone, first
            response = client.post(url, json=body)
            assert response.status_code == 200, (url, response.text)
        for method, param in ACCEPTED_PARAMS:
            if param.header is not None:
                body, headers = BASE_BODIES[method.url], {param.header: param.sample}
            else:
                body, headers = {**BASE_BODIES[method.url], **ACCEPTED[method.url][param.name]}, {}
            response = client.post(method.url, json=body, headers=headers)
            if response.status_code != 200:
                refused.append((method.path, param.name, response.text))
    assert refused == []


# --- every accepted parameter, with and without it ------------------------------------------


class RecordingEngine:
    """An engine as the pool hands it out, which notes each request it is given first."""

    def __init__(self, engine: Any, received: list[Any]) -> None:
        self._engine = engine
        self._received = received

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def generate(self, request: GenerationRequest) -> Any:
        self._received.append(request)
        return await self._engine.generate(request)

    def stream(self, request: GenerationRequest) -> Any:
        self._received.append(request)
        return self._engine.stream(request)

    async def embed(self, request: EmbeddingRequest) -> Any:
        self._received.append(request)
        return await self._engine.embed(request)


class RecordingPool(EnginePool):
    """The engine pool of `freight serve`, its engines recording what reaches them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, Registry(settings))
        self.received: list[GenerationRequest | EmbeddingRequest] = []

    async def get(self, model: str) -> Engine:
        return cast(Engine, RecordingEngine(await super().get(model), self.received))

    async def get_embedder(self, model: str) -> EmbeddingEngine:
        engine = await super().get_embedder(model)
        return cast(EmbeddingEngine, RecordingEngine(engine, self.received))


@pytest.fixture
def recording_server(tmp_path: Path) -> Iterator[LiveServer]:
    """An echo server that also serves the samples' other models (a second echo engine, a
    second copy of the embeddings model), its engines recording every request."""
    settings = make_settings(
        tmp_path / "home",
        models=[
            ModelSettings(name="echo", engine="echo"),
            ModelSettings(name=sdk_parity.OTHER_CHAT_MODEL, engine="echo"),
            ModelSettings(
                name=sdk_parity.OTHER_EMBEDDING_MODEL, engine="embeddings", path=find_minilm_dir()
            ),
        ],
    )
    server = LiveServer(Service(settings, engines=RecordingPool(settings))).start()
    yield server
    server.stop()


# Keys whose values differ between two identical requests (ids, clocks).
VOLATILE = {"id", "item_id", "created", "created_at", "completed_at"}


def _seconds(value: Any) -> Any:
    """Unix seconds, from seconds or an RFC 3339 time (Anthropic's objects)."""
    if isinstance(value, str):
        return int(datetime.fromisoformat(value).timestamp())
    return value


def comparable(value: Any) -> Any:
    """An answer with what differs between two identical requests taken out: ids and clocks
    (an expiry is kept as its distance from creation, which a window or an expiry sets)."""
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if not isinstance(value, dict):
        return value
    kept = {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if value.get("expires_at") is not None and value.get("created_at") is not None:
        kept["expires_at"] = _seconds(value["expires_at"]) - _seconds(value["created_at"])
    return kept


def answer(response: httpx.Response) -> tuple[int, str, Any]:
    """The status, the media type and the comparable body (a stream: its events in order)."""
    media_type = response.headers["content-type"].split(";")[0]
    if media_type != "text/event-stream":
        return response.status_code, media_type, comparable(response.json())
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(comparable(json.loads(line.removeprefix("data: "))))
        elif line:
            events.append(line)
    return response.status_code, media_type, events


@dataclass(frozen=True)
class Outcome:
    """What one request did: the requests its engine received (their ids blanked) and the
    answer."""

    engine_requests: list[Any]
    answer: tuple[int, str, Any]


def send(
    client: httpx.Client, pool: RecordingPool, url: str, body: dict[str, Any], headers: Any
) -> Outcome:
    pool.received.clear()
    response = client.post(url, json=body, headers=headers)
    received = [dataclasses.replace(r, request_id="") for r in pool.received]
    return Outcome(received, answer(response))


def with_and_without(
    param: sdk_parity.Param, base: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The body (or SDK arguments) without the parameter, with it, and the headers with it.
    A parameter the base already has (`model`, `messages`) is "without" at its base value."""
    without = {**base, **param.context}
    if param.header is not None:
        return without, without, {param.header: param.sample}
    return without, {**without, param.name: param.sample}, {}


BODY_PARAMS = [
    (method, param)
    for method in sdk_parity.METHODS
    if method.url in BASE_BODIES
    for param in method.params
    if param.support != sdk_parity.R and not param.proof
]


def test_supported_parameters_have_an_effect_and_ignored_ones_none(
    recording_server: LiveServer,
) -> None:
    pool = cast(RecordingPool, recording_server.svc.engines)
    wrong = []
    with httpx.Client(base_url=recording_server.base_url, timeout=120) as client:
        for method, param in BODY_PARAMS:
            without_body, with_body, headers = with_and_without(param, BASE_BODIES[method.url])
            plain = send(client, pool, method.url, without_body, {})
            asked = send(client, pool, method.url, with_body, headers)
            where = (method.path, param.name)
            if not asked.engine_requests:  # refused before the engine: proves nothing
                wrong.append((*where, "never reached the engine", asked.answer))
            elif param.support == sdk_parity.S and plain == asked:
                wrong.append((*where, "changed nothing", asked.engine_requests))
            elif param.support == sdk_parity.IGN and (
                plain.engine_requests != asked.engine_requests or plain.answer[0] != asked.answer[0]
            ):
                wrong.append((*where, "changed the engine's request", asked.engine_requests))
    assert wrong == []


ECHO_LINE = json.dumps(chat_line("one", "hi", model="echo")).encode() + b"\n"
EXPIRY = {"anchor": "created_at", "seconds": 7200}
# The SDK arguments each object-creating method is varied from.
OBJECT_BASES: dict[str, Callable[[LiveServer], dict[str, Any]]] = {
    "/v1/files": lambda server: {"file": ("in.jsonl", ECHO_LINE), "purpose": "batch"},
    "/v1/batches": lambda server: {
        "input_file_id": server.openai()
        .files.create(file=("in.jsonl", ECHO_LINE), purpose="batch")
        .id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    },
    "/v1/messages/batches": lambda server: {
        "requests": [{"custom_id": "one", "params": {**BASE_BODIES["/v1/messages"]}}]
    },
}


def test_every_method_has_a_request_to_vary() -> None:
    assert {m.url for m in sdk_parity.METHODS} == BASE_BODIES.keys() | OBJECT_BASES.keys()


def test_parameters_of_files_and_batches_show_in_the_object_created(
    echo_server: LiveServer,
) -> None:
    """A supported parameter changes the file or batch object answered (its expiry: the
    distance from its creation); an ignored one leaves it as it was."""
    wrong = []
    clients = {"openai": echo_server.openai(), "anthropic": echo_server.anthropic()}
    for method in sdk_parity.METHODS:
        if method.url not in OBJECT_BASES:
            continue
        create: Any = clients[method.sdk]
        for attribute in method.path.split("."):
            create = getattr(create, attribute)
        base = OBJECT_BASES[method.url](echo_server)
        for param in method.params:
            if param.proof:
                continue  # its test is named in the table (test_sdk_parity.py checks it exists)
            without = {**base, **param.context}
            with_it = {**without, param.name: param.sample}
            plain = comparable(create(**without).model_dump(mode="json"))
            asked = comparable(create(**with_it).model_dump(mode="json"))
            if (plain == asked) != (param.support == sdk_parity.IGN):
                wrong.append((method.path, param.name, param.support, asked))
    assert wrong == []


def test_a_batch_runs_its_input_file_and_its_output_expires_as_asked(
    echo_server: LiveServer,
) -> None:
    """`input_file_id` and `output_expires_after`, whose effect shows once the batch has run:
    each batch answers the lines of its own file, and only the one that asked for it has an
    output file that expires, that long after it was written."""
    client = echo_server.openai()
    custom_ids = {"first": ["a", "b"], "second": ["c"]}
    batches = {}
    for name, ids_ in custom_ids.items():
        lines = b"".join(
            json.dumps(chat_line(i, f"word {i}", model="echo")).encode() + b"\n" for i in ids_
        )
        uploaded = client.files.create(file=(f"{name}.jsonl", lines), purpose="batch")
        expiry = {"output_expires_after": EXPIRY} if name == "first" else {}
        batches[name] = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            **expiry,
        )
    for name, created in batches.items():
        batch = wait_for_batch(client, created.id)
        assert batch.status == "completed", batch.errors
        outputs = output_lines(client, batch.output_file_id)
        assert sorted(line["custom_id"] for line in outputs) == custom_ids[name]
        output = client.files.retrieve(batch.output_file_id)
        if name == "first":
            assert output.expires_at == output.created_at + EXPIRY["seconds"]
        else:
            assert output.expires_at is None
