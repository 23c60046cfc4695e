"""The parity table covers every parameter of the pinned SDKs' request methods, agrees
with the request models, gives every accepted parameter a sample to send with and without
it (or names the test that proves a supported one), and docs/compatibility.md is its
render."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

from freight.protocol import endpoints, openai_wire, sdk_parity
from freight.protocol.request_model import field_names

REPO = Path(__file__).resolve().parents[2]

# The request model of each body a method sends (multipart and envelope bodies: none).
BODY_MODELS: dict[str, type[BaseModel]] = {
    **{url: e.request_model for url, e in endpoints.ENDPOINTS.items()},
    "/v1/batches": openai_wire.CreateBatch,
}
CLIENTS = {
    "openai": openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1"),
    "anthropic": anthropic.Anthropic(api_key="x", base_url="http://127.0.0.1:9"),
}


def sdk_params(method: sdk_parity.Method) -> list[str]:
    function: Any = CLIENTS[method.sdk]
    for attribute in method.path.split("."):
        function = getattr(function, attribute)
    names = inspect.signature(function).parameters
    return [n for n in names if n not in sdk_parity.REQUEST_OPTIONS]


def test_the_pinned_sdks_are_the_ones_installed() -> None:
    assert (openai.__version__, anthropic.__version__) == (
        sdk_parity.OPENAI_VERSION,
        sdk_parity.ANTHROPIC_VERSION,
    )


@pytest.mark.parametrize("method", sdk_parity.METHODS, ids=lambda m: f"{m.sdk}.{m.path}")
def test_every_sdk_parameter_has_a_row_and_every_row_an_sdk_parameter(
    method: sdk_parity.Method,
) -> None:
    rows = [p.name for p in method.params]
    assert len(rows) == len(set(rows)), "a parameter listed twice"
    sdk = sdk_params(method)
    assert sorted(set(sdk) - set(rows)) == [], "SDK parameters missing from sdk_parity.py"
    assert sorted(set(rows) - set(sdk)) == [], "rows for parameters the SDK no longer has"


@pytest.mark.parametrize(
    "method",
    [m for m in sdk_parity.METHODS if m.url in BODY_MODELS],  # not multipart, not envelopes
    ids=lambda m: f"{m.sdk}.{m.path}",
)
def test_accepted_parameters_are_fields_of_the_request_model(method: sdk_parity.Method) -> None:
    fields = field_names(BODY_MODELS[method.url])
    accepted = [p.name for p in method.params if p.support != sdk_parity.R and p.header is None]
    assert [name for name in accepted if name not in fields] == []


def test_compatibility_md_is_the_render_of_the_table() -> None:
    assert sdk_parity.PAGE.read_text() == sdk_parity.render(), (
        "docs/compatibility.md differs from its render: run python -m freight.protocol.sdk_parity"
    )


PARAMS = [(method, param) for method in sdk_parity.METHODS for param in method.params]


def test_every_parameter_has_a_sample_or_names_the_test_that_proves_it() -> None:
    """The e2e tests send each sample: a refused one must be a 400 naming it, a supported
    one must change what reaches the engine or the answer, an ignored one must not change
    what reaches the engine. Only a supported parameter whose effect no sample can show
    (it shows once a batch has run) names its test instead; without either, nothing would
    show that a new supported parameter does anything."""
    unproven = [(m.path, p.name) for m, p in PARAMS if p.sample is None and not p.proof]
    assert unproven == []
    both = [(m.path, p.name) for m, p in PARAMS if p.sample is not None and p.proof]
    assert both == []
    proven_but_not_supported = [
        (m.path, p.name) for m, p in PARAMS if p.proof and p.support != sdk_parity.S
    ]
    assert proven_but_not_supported == []


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_proof_names_a_test_that_exists() -> None:
    missing = []
    for method, param in PARAMS:
        if not param.proof:
            continue
        path, _, name = param.proof.partition("::")
        file = REPO / path
        if not name.startswith("test_") or not file.is_file() or name not in defined_tests(file):
            missing.append((method.path, param.name, param.proof))
    assert missing == []
