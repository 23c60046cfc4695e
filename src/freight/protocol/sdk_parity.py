"""What Freight does with every parameter of the pinned SDKs' request methods.

One row per parameter of each SDK method a client calls to send work (the `openai` and
`anthropic` versions pinned in pyproject.toml): supported, accepted and ignored, or
refused with a 400 that names it. tests/unit/test_sdk_parity.py walks the SDKs' own
signatures and fails on a parameter missing here (or listed here and gone from the SDK),
so updating a pin shows exactly what changed; tests/e2e/test_sdk_parity_api.py sends
every one through the API (refused: a 400 naming it; the others: accepted), and sends
each accepted one's `sample` with and without it: a supported parameter must change the
request the engine receives or the object Freight answers with, an ignored one must not
change the engine's request. A supported parameter no sample can show names the test
that does (`proof`); the unit test fails on one that has neither. The same rows render
docs/compatibility.md (`python -m freight.protocol.sdk_parity` rewrites it).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

OPENAI_VERSION = "3.63.0"
ANTHROPIC_VERSION = "2.17.0"
PAGE = Path(__file__).resolve().parents[3] / "docs" / "compatibility.md"
# Every SDK method takes these: request options, not API parameters.
REQUEST_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")
# The models the samples name besides the test server's `echo` and the default embeddings
# model: a sample of `model` must reach another engine (tests/e2e/test_sdk_parity_api.py
# serves both).
OTHER_CHAT_MODEL = "echo-2"
OTHER_EMBEDDING_MODEL = "minilm-2"


class Support(Enum):
    SUPPORTED = "supported"
    IGNORED = "accepted and ignored"
    REFUSED = "refused (400 naming it)"


S, IGN, R = Support.SUPPORTED, Support.IGNORED, Support.REFUSED


@dataclass(frozen=True)
class Param:
    name: str
    support: Support
    note: str = ""
    # A value that asks for something. Refused: the test sends it and expects a 400
    # naming the parameter. Supported: sent with and without it, it must change what
    # reaches the engine or the answer; ignored: it must not change what reaches the
    # engine. None: no sample (a supported parameter then names its `proof`).
    sample: Any = None
    # Other fields the sample needs, sent both with and without it (a tool_choice's tools).
    context: Mapping[str, Any] = field(default_factory=dict)
    # Sent as this HTTP header by the SDK, not in the body.
    header: str | None = None
    # The test that shows a supported parameter's effect where no sample can
    # ("tests/<path>.py::<test name>").
    proof: str = ""


@dataclass(frozen=True)
class Method:
    """An SDK method (`sdk`, its attribute path on the client) and the URL it posts to."""

    sdk: str
    path: str
    url: str
    params: tuple[Param, ...]

    @property
    def title(self) -> str:
        return f"`{self.sdk}` `client.{self.path}(...)` → `POST {self.url}`"


_UNSUPPORTED = "not supported by Freight's local models"
_SERVICE_TIER = (
    "`auto`, `default`: real time; `flex`: queued with batch work, billed at the batch "
    "price, 429 with Retry-After when no capacity frees up (with or without `stream`); `scale`, "
    "`priority`, `fast` are refused"
)
# Samples: a schema to decode against, and a tool with it in each API's shape.
_SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
_CHAT_TOOL = {"type": "function", "function": {"name": "f", "parameters": _SCHEMA}}
_MESSAGES_TOOL = {"name": "f", "input_schema": _SCHEMA}
_TALK = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "bye now"}]
_EXPIRY = {"anchor": "created_at", "seconds": 3600}
_PROOF_BATCH = (
    "tests/e2e/test_sdk_parity_api.py::"
    "test_a_batch_runs_its_input_file_and_its_output_expires_as_asked"
)

METHODS: tuple[Method, ...] = (
    Method(
        "openai",
        "chat.completions.create",
        "/v1/chat/completions",
        (
            Param("messages", S, "text content; `developer` is a system turn", _TALK),
            Param("model", S, "", OTHER_CHAT_MODEL),
            Param("audio", R, _UNSUPPORTED, {"voice": "alloy", "format": "wav"}),
            Param("frequency_penalty", S, "", 0.5),
            Param("function_call", R, "deprecated upstream: use `tool_choice`", "auto"),
            Param("functions", R, "deprecated upstream: use `tools`", []),
            Param("logit_bias", R, _UNSUPPORTED, {"50256": -100}),
            Param("logprobs", R, "`false` is accepted", True),
            Param("max_completion_tokens", S, "", 1),
            Param("max_tokens", S, "", 1),
            Param("metadata", IGN, "", {"k": "v"}),
            Param("modalities", R, _UNSUPPORTED, ["text", "audio"]),
            Param("moderation", R, _UNSUPPORTED, {"type": "auto"}),
            Param("n", S, "", 2),
            Param(
                "parallel_tool_calls",
                IGN,
                "a forced tool call is always one call",
                False,
                {"tools": [_CHAT_TOOL], "tool_choice": "required"},
            ),
            Param("prediction", R, _UNSUPPORTED, {"type": "content", "content": "x"}),
            Param("presence_penalty", S, "", 0.5),
            Param("prompt_cache_key", IGN, "vLLM's prefix cache needs no key", "k"),
            Param("prompt_cache_options", R, _UNSUPPORTED, {}),
            Param("prompt_cache_retention", R, _UNSUPPORTED, "24h"),
            Param("reasoning_effort", R, _UNSUPPORTED, "low"),
            Param(
                "response_format",
                S,
                "`json_object`, `json_schema`: enforced while decoding",
                {"type": "json_schema", "json_schema": {"name": "x", "schema": _SCHEMA}},
            ),
            Param("safety_identifier", IGN, "", "u"),
            Param("seed", S, "", 1),
            Param("service_tier", S, _SERVICE_TIER, "flex"),
            Param("stop", S, "", ["x"]),
            Param("store", IGN, "", True),
            Param("stream", S, "real time only", True),
            Param("stream_options", S, "", {"include_usage": True}, {"stream": True}),
            Param("temperature", S, "", 0.5),
            Param(
                "tool_choice",
                S,
                "`required` (one tool) or a named function: decoded against its schema; "
                "`auto` needs the model's `tool_call_parser` and does not stream",
                "required",
                {"tools": [_CHAT_TOOL]},
            ),
            Param("tools", S, "function tools", [_CHAT_TOOL]),
            Param("top_logprobs", R, _UNSUPPORTED, 2),
            Param("top_p", S, "", 0.5),
            Param("user", IGN, "", "u"),
            Param("verbosity", R, _UNSUPPORTED, "low"),
            Param("web_search_options", R, _UNSUPPORTED, {}),
        ),
    ),
    Method(
        "openai",
        "completions.create",
        "/v1/completions",
        (
            Param("model", S, "", OTHER_CHAT_MODEL),
            Param("prompt", S, "text, texts, token ids, or lists of token ids", ["bye", "now"]),
            Param("best_of", R, _UNSUPPORTED, 2),
            Param("echo", S, "", True),
            Param("frequency_penalty", S, "", 0.5),
            Param("logit_bias", R, _UNSUPPORTED, {"50256": -100}),
            Param("logprobs", R, _UNSUPPORTED, 2),
            Param("max_tokens", S, "", 1),
            Param("n", S, "", 2),
            Param("presence_penalty", S, "", 0.5),
            Param("seed", S, "", 1),
            Param("stop", S, "", ["x"]),
            Param("stream", S, "real time only", True),
            Param("stream_options", S, "", {"include_usage": True}, {"stream": True}),
            Param("suffix", R, _UNSUPPORTED, "the end"),
            Param("temperature", S, "", 0.5),
            Param("top_p", S, "", 0.5),
            Param("user", IGN, "", "u"),
        ),
    ),
    Method(
        "openai",
        "responses.create",
        "/v1/responses",
        (
            Param("access_programs", R, _UNSUPPORTED, []),
            Param("background", R, "a batch is Freight's background mode", True),
            Param("background_options", R, _UNSUPPORTED, {}),
            Param("context_management", R, _UNSUPPORTED, []),
            Param("conversation", R, "responses are not stored", "conv_1"),
            Param("image", R, _UNSUPPORTED, {}),
            Param("include", R, _UNSUPPORTED, ["message.output_text.logprobs"]),
            Param("input", S, "a string or a list of text messages", _TALK),
            Param("instructions", S, "", "Be brief."),
            Param("max_output_tokens", S, "", 1),
            Param("max_tool_calls", R, _UNSUPPORTED, 1),
            Param("metadata", S, "echoed in the response", {"k": "v"}),
            Param("model", S, "", OTHER_CHAT_MODEL),
            Param("moderation", R, _UNSUPPORTED, {}),
            Param("parallel_tool_calls", IGN, "", False),
            Param("previous_response_id", R, "responses are not stored", "resp_1"),
            Param("prompt", R, "stored prompts are not supported", {"id": "pmpt_1"}),
            Param("prompt_cache_key", IGN, "vLLM's prefix cache needs no key", "k"),
            Param("prompt_cache_options", R, _UNSUPPORTED, {}),
            Param("prompt_cache_retention", R, _UNSUPPORTED, "24h"),
            Param("reasoning", R, _UNSUPPORTED, {"effort": "low"}),
            Param("safety_identifier", IGN, "", "u"),
            Param("service_tier", S, _SERVICE_TIER, "flex"),
            Param("store", IGN, "responses are not stored", True),
            Param("stream", S, "real time only", True),
            Param("stream_options", R, _UNSUPPORTED, {"include_obfuscation": False}),
            Param("temperature", S, "", 0.5),
            Param(
                "text",
                S,
                "`text.format` json_schema / json_object: enforced while decoding",
                {"format": {"type": "json_schema", "name": "x", "schema": _SCHEMA}},
            ),
            Param("tool_choice", R, "tools are supported on chat completions", "required"),
            Param("tools", R, "tools are supported on chat completions", []),
            Param("top_logprobs", R, _UNSUPPORTED, 2),
            Param("top_p", S, "", 0.5),
            Param("truncation", R, _UNSUPPORTED, "auto"),
            Param("user", IGN, "", "u"),
        ),
    ),
    Method(
        "openai",
        "embeddings.create",
        "/v1/embeddings",
        (
            Param("input", S, "", ["bye", "now"]),
            Param("model", S, "an embeddings model", OTHER_EMBEDDING_MODEL),
            Param("dimensions", S, "must equal the model's own", 384),
            Param("encoding_format", S, "", "base64"),
            Param("user", IGN, "", "u"),
        ),
    ),
    Method(
        "openai",
        "batches.create",
        "/v1/batches",
        (
            Param("completion_window", S, "`24h`, or any `<n>s|m|h|d`", "1h"),
            Param("endpoint", S, "", "/v1/completions"),
            Param("input_file_id", S, proof=_PROOF_BATCH),
            Param("metadata", S, "", {"job": "nightly"}),
            Param("output_expires_after", S, proof=_PROOF_BATCH),
        ),
    ),
    Method(
        "openai",
        "files.create",
        "/v1/files",
        (
            Param("file", S, "", ("other.jsonl", b'{"custom_id": "other"}\n')),
            Param("purpose", S, "", "user_data"),
            Param("expires_after", S, "", _EXPIRY),
        ),
    ),
    Method(
        "anthropic",
        "messages.create",
        "/v1/messages",
        (
            Param("max_tokens", S, "", 1),
            Param("messages", S, "text blocks", [{"role": "user", "content": "bye now"}]),
            Param("model", S, "", OTHER_CHAT_MODEL),
            Param(
                "cache_control",
                IGN,
                "vLLM's prefix cache reuses shared prefixes by itself",
                {"type": "ephemeral"},
            ),
            Param("container", R, _UNSUPPORTED, "container_1"),
            Param("diagnostics", R, _UNSUPPORTED, {"previous_message_id": "msg_1"}),
            Param("inference_geo", R, "Freight runs where you run it", "us"),
            Param("metadata", IGN, "", {"user_id": "u"}),
            Param(
                "output_config",
                S,
                "`format` (json_schema): enforced while decoding; `effort` is ignored",
                {"effort": "low", "format": {"type": "json_schema", "schema": _SCHEMA}},
            ),
            Param(
                "service_tier",
                IGN,
                "`auto`, `standard_only`: real time; `flex` (Freight's own): as for OpenAI's",
                "standard_only",
            ),
            Param("speed", R, _UNSUPPORTED, "fast"),
            Param("stop_sequences", S, "", ["x"]),
            Param("stream", S, "real time only", True),
            Param("system", S, "", "Be brief."),
            Param("thinking", R, _UNSUPPORTED, {"type": "enabled", "budget_tokens": 1024}),
            Param(
                "tool_choice",
                S,
                "`tool` (by name), or `any` with one tool: decoded against the input schema; "
                "`auto` needs the model's `tool_call_parser` and does not stream",
                {"type": "any"},
                {"tools": [_MESSAGES_TOOL]},
            ),
            Param("tools", S, "custom tools; tool-result turns are refused", [_MESSAGES_TOOL]),
            Param("user_profile_id", IGN, "a header", "u", header="anthropic-user-profile-id"),
            Param("workspace_id", IGN, "a header", "w", header="anthropic-workspace-id"),
        ),
    ),
    Method(
        "anthropic",
        "messages.batches.create",
        "/v1/messages/batches",
        (
            Param(
                "requests",
                S,
                "each `params` as for messages.create",
                [
                    {
                        "custom_id": custom_id,
                        "params": {
                            "model": "echo",
                            "max_tokens": 4,
                            "messages": [{"role": "user", "content": custom_id}],
                        },
                    }
                    for custom_id in ("one", "two")
                ],
            ),
            Param("user_profile_id", IGN, "a header", "u", header="anthropic-user-profile-id"),
            Param("workspace_id", IGN, "a header", "w", header="anthropic-workspace-id"),
        ),
    ),
)


def render() -> str:
    """docs/compatibility.md: one table per SDK method."""
    lines = [
        "# SDK compatibility",
        "",
        "<!-- Generated from src/freight/protocol/sdk_parity.py: "
        "python -m freight.protocol.sdk_parity -->",
        "",
        f"Every parameter of the request methods of `openai` {OPENAI_VERSION} and "
        f"`anthropic` {ANTHROPIC_VERSION} (the versions Freight pins), and what Freight "
        "does with it: **supported**, **accepted and ignored**, or **refused** with a 400 "
        "that names the parameter. The SDKs' request options (`extra_headers`, "
        "`extra_query`, `extra_body`, `timeout`) are not listed. A test walks the SDKs' "
        "signatures, so this page changes with the pins. Another sends each supported "
        "parameter with and without it and checks that it changes the request the engine "
        "receives or Freight's answer, and each ignored one that the engine's request "
        "stays the same.",
        "",
        "Parameters that the newest `anthropic` signature no longer lists but Freight "
        "still supports in the body (`temperature`, `top_p`, `top_k`) travel in "
        "`extra_body`.",
    ]
    for method in METHODS:
        lines += ["", f"## {method.title}", "", "| Parameter | Freight | Notes |", "|---|---|---|"]
        for p in method.params:
            lines.append(f"| `{p.name}` | {p.support.value} | {p.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    sys.stdout.write(f"wrote {PAGE}\n")
