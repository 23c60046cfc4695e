"""What Freight does with every parameter of the pinned SDKs' request methods.

One row per parameter of each SDK method a client calls to send work (the `openai` and
`anthropic` versions pinned in pyproject.toml): supported, accepted and ignored, or
refused with a 400 that names it. tests/unit/test_sdk_parity.py walks the SDKs' own
signatures and fails on a parameter missing here (or listed here and gone from the SDK),
so updating a pin shows exactly what changed; tests/e2e/test_sdk_parity_api.py sends
every one through the API (refused: a 400 naming it; the others: accepted). The same
rows render docs/compatibility.md (`python -m freight.protocol.sdk_parity` rewrites it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

OPENAI_VERSION = "3.63.0"
ANTHROPIC_VERSION = "2.17.0"
PAGE = Path(__file__).resolve().parents[3] / "docs" / "compatibility.md"
# Every SDK method takes these: request options, not API parameters.
REQUEST_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")


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
    # For a refused parameter: a value that asks for the feature (the test sends it).
    sample: Any = True
    # Sent as this HTTP header by the SDK, not in the body.
    header: str | None = None


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

METHODS: tuple[Method, ...] = (
    Method(
        "openai",
        "chat.completions.create",
        "/v1/chat/completions",
        (
            Param("messages", S, "text content; `developer` is a system turn"),
            Param("model", S),
            Param("audio", R, _UNSUPPORTED, {"voice": "alloy", "format": "wav"}),
            Param("frequency_penalty", S),
            Param("function_call", R, "deprecated upstream: use `tool_choice`", "auto"),
            Param("functions", R, "deprecated upstream: use `tools`", []),
            Param("logit_bias", R, _UNSUPPORTED, {"50256": -100}),
            Param("logprobs", R, "`false` is accepted", True),
            Param("max_completion_tokens", S),
            Param("max_tokens", S),
            Param("metadata", IGN),
            Param("modalities", R, _UNSUPPORTED, ["text", "audio"]),
            Param("moderation", R, _UNSUPPORTED, {"type": "auto"}),
            Param("n", S),
            Param("parallel_tool_calls", IGN, "a forced tool call is always one call"),
            Param("prediction", R, _UNSUPPORTED, {"type": "content", "content": "x"}),
            Param("presence_penalty", S),
            Param("prompt_cache_key", IGN, "vLLM's prefix cache needs no key"),
            Param("prompt_cache_options", R, _UNSUPPORTED, {}),
            Param("prompt_cache_retention", R, _UNSUPPORTED, "24h"),
            Param("reasoning_effort", R, _UNSUPPORTED, "low"),
            Param("response_format", S, "`json_object`, `json_schema`: enforced while decoding"),
            Param("safety_identifier", IGN),
            Param("seed", S),
            Param(
                "service_tier", R, "real time is always first; batches are their own tier", "auto"
            ),
            Param("stop", S),
            Param("store", IGN),
            Param("stream", S, "real time only"),
            Param("stream_options", S),
            Param("temperature", S),
            Param(
                "tool_choice",
                S,
                "`required` (one tool) or a named function: decoded against its schema; "
                "`auto` needs the model's `tool_call_parser` and does not stream",
            ),
            Param("tools", S, "function tools"),
            Param("top_logprobs", R, _UNSUPPORTED, 2),
            Param("top_p", S),
            Param("user", IGN),
            Param("verbosity", R, _UNSUPPORTED, "low"),
            Param("web_search_options", R, _UNSUPPORTED, {}),
        ),
    ),
    Method(
        "openai",
        "completions.create",
        "/v1/completions",
        (
            Param("model", S),
            Param("prompt", S, "text, texts, token ids, or lists of token ids"),
            Param("best_of", R, _UNSUPPORTED, 2),
            Param("echo", S),
            Param("frequency_penalty", S),
            Param("logit_bias", R, _UNSUPPORTED, {"50256": -100}),
            Param("logprobs", R, _UNSUPPORTED, 2),
            Param("max_tokens", S),
            Param("n", S),
            Param("presence_penalty", S),
            Param("seed", S),
            Param("stop", S),
            Param("stream", S, "real time only"),
            Param("stream_options", S),
            Param("suffix", R, _UNSUPPORTED, "the end"),
            Param("temperature", S),
            Param("top_p", S),
            Param("user", IGN),
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
            Param("input", S, "a string or a list of text messages"),
            Param("instructions", S),
            Param("max_output_tokens", S),
            Param("max_tool_calls", R, _UNSUPPORTED, 1),
            Param("metadata", S, "echoed in the response"),
            Param("model", S),
            Param("moderation", R, _UNSUPPORTED, {}),
            Param("parallel_tool_calls", IGN),
            Param("previous_response_id", R, "responses are not stored", "resp_1"),
            Param("prompt", R, "stored prompts are not supported", {"id": "pmpt_1"}),
            Param("prompt_cache_key", IGN, "vLLM's prefix cache needs no key"),
            Param("prompt_cache_options", R, _UNSUPPORTED, {}),
            Param("prompt_cache_retention", R, _UNSUPPORTED, "24h"),
            Param("reasoning", R, _UNSUPPORTED, {"effort": "low"}),
            Param("safety_identifier", IGN),
            Param("service_tier", R, "real time is always first", "auto"),
            Param("store", IGN, "responses are not stored"),
            Param("stream", S, "real time only"),
            Param("stream_options", R, _UNSUPPORTED, {"include_obfuscation": False}),
            Param("temperature", S),
            Param("text", S, "`text.format` json_schema / json_object: enforced while decoding"),
            Param("tool_choice", R, "tools are supported on chat completions", "required"),
            Param("tools", R, "tools are supported on chat completions", []),
            Param("top_logprobs", R, _UNSUPPORTED, 2),
            Param("top_p", S),
            Param("truncation", R, _UNSUPPORTED, "auto"),
            Param("user", IGN),
        ),
    ),
    Method(
        "openai",
        "embeddings.create",
        "/v1/embeddings",
        (
            Param("input", S),
            Param("model", S, "an embeddings model"),
            Param("dimensions", S, "must equal the model's own"),
            Param("encoding_format", S),
            Param("user", IGN),
        ),
    ),
    Method(
        "openai",
        "batches.create",
        "/v1/batches",
        (
            Param("completion_window", S, "`24h`, or any `<n>s|m|h|d`"),
            Param("endpoint", S),
            Param("input_file_id", S),
            Param("metadata", S),
            Param("output_expires_after", S),
        ),
    ),
    Method(
        "openai",
        "files.create",
        "/v1/files",
        (
            Param("file", S),
            Param("purpose", S),
            Param("expires_after", S),
        ),
    ),
    Method(
        "anthropic",
        "messages.create",
        "/v1/messages",
        (
            Param("max_tokens", S),
            Param("messages", S, "text blocks"),
            Param("model", S),
            Param("cache_control", IGN, "vLLM's prefix cache reuses shared prefixes by itself"),
            Param("container", R, _UNSUPPORTED, "container_1"),
            Param("diagnostics", R, _UNSUPPORTED, {"previous_message_id": "msg_1"}),
            Param("inference_geo", R, "Freight runs where you run it", "us"),
            Param("metadata", IGN),
            Param(
                "output_config",
                S,
                "`format` (json_schema): enforced while decoding; `effort` is ignored",
            ),
            Param("service_tier", IGN, "every request is served alike"),
            Param("speed", R, _UNSUPPORTED, "fast"),
            Param("stop_sequences", S),
            Param("stream", S, "real time only"),
            Param("system", S),
            Param("thinking", R, _UNSUPPORTED, {"type": "enabled", "budget_tokens": 1024}),
            Param(
                "tool_choice",
                S,
                "`tool` (by name), or `any` with one tool: decoded against the input schema; "
                "`auto` needs the model's `tool_call_parser` and does not stream",
            ),
            Param("tools", S, "custom tools; tool-result turns are refused"),
            Param("user_profile_id", IGN, "a header", header="anthropic-user-profile-id"),
            Param("workspace_id", IGN, "a header", header="anthropic-workspace-id"),
        ),
    ),
    Method(
        "anthropic",
        "messages.batches.create",
        "/v1/messages/batches",
        (
            Param("requests", S, "each `params` as for messages.create"),
            Param("user_profile_id", IGN, "a header", header="anthropic-user-profile-id"),
            Param("workspace_id", IGN, "a header", header="anthropic-workspace-id"),
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
        "signatures, so this page changes with the pins.",
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
