"""Every parameter of the parity table through the API: each refused one is a 400 that
names it, and each supported or ignored one is accepted (the echo engine and the default
embeddings model: what is checked is Freight's handling of the parameter).

Files and batch creation (multipart and envelope bodies) have their own end-to-end tests
(test_openai_batches.py, test_message_batches_api.py).
"""

from __future__ import annotations

from typing import Any

import httpx

from freight.config import DEFAULT_EMBEDDING_MODEL
from freight.protocol import sdk_parity
from tests.conftest import LiveServer

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
                body, headers = BASE_BODIES[method.url], {param.header: "x"}
            else:
                body, headers = {**BASE_BODIES[method.url], **ACCEPTED[method.url][param.name]}, {}
            response = client.post(method.url, json=body, headers=headers)
            if response.status_code != 200:
                refused.append((method.path, param.name, response.text))
    assert refused == []
