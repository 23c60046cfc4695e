"""Every parameter the parity table lists as refused is a 400 that names it, through the
API (the echo engine: a refusal happens before any engine runs)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from freight.protocol import sdk_parity
from tests.conftest import LiveServer

MESSAGES = [{"role": "user", "content": "hi"}]
BASE_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "echo", "messages": MESSAGES},
    "/v1/completions": {"model": "echo", "prompt": "hi"},
    "/v1/responses": {"model": "echo", "input": "hi"},
    "/v1/messages": {"model": "echo", "max_tokens": 4, "messages": MESSAGES},
}
REFUSED = [
    (method, param)
    for method in sdk_parity.METHODS
    for param in method.params
    if param.support == sdk_parity.R
]


def test_every_refused_parameter_is_on_an_endpoint_with_a_base_body() -> None:
    assert {method.url for method, _ in REFUSED} <= BASE_BODIES.keys()


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


@pytest.mark.parametrize("url", sorted(BASE_BODIES))
def test_the_base_bodies_are_accepted(echo_server: LiveServer, url: str) -> None:
    """So that each refusal above is the parameter's, not the base body's."""
    response = httpx.post(f"{echo_server.base_url}{url}", json=BASE_BODIES[url])
    assert response.status_code == 200, response.text
