"""The /v1/embeddings wire format: input shapes, encodings, usage, and model-kind checks."""

from __future__ import annotations

import array
import base64
import io
import json
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse as SDKEmbeddingResponse

from freight.config import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, LimitSettings
from freight.engines.base import EmbeddingRequest, Embeddings
from freight.engines.registry import Registry
from freight.protocol import endpoints
from freight.protocol.batch_input import FileValidator, iter_lines
from tests.conftest import make_settings
from tests.spec import assert_matches

URL = "/v1/embeddings"
ENDPOINT = endpoints.ENDPOINTS[URL]


def parse(**body: Any) -> Any:
    return endpoints.parse_body(ENDPOINT, {"model": "emb", **body}, in_batch=True)


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("one text", ("one text",)),
        (["a", "b"], ("a", "b")),
        ([5, 6, 7], ((5, 6, 7),)),
        ([[5, 6], [7]], ((5, 6), (7,))),
    ],
)
def test_input_shapes_become_one_input_each(value: Any, inputs: tuple[Any, ...]) -> None:
    body = parse(input=value)
    assert body.inputs() == inputs
    request = ENDPOINT.to_request(body, "req-1")  # type: ignore[union-attr]
    assert request == EmbeddingRequest("req-1", "emb", inputs)


@pytest.mark.parametrize(
    "value",
    ["", [], [""], ["a", 5], [[1], "a"], [[1], []], [True, 2], {"text": "a"}, ["x"] * 2049],
)
def test_bad_input_is_a_400_naming_what_is_accepted(value: Any) -> None:
    with pytest.raises(endpoints.BodyError) as excinfo:
        parse(input=value)
    assert excinfo.value.param == "input"
    assert "a list of up to 2048 non-empty strings" in excinfo.value.message


def test_unknown_encoding_format_is_a_400() -> None:
    with pytest.raises(endpoints.BodyError) as excinfo:
        parse(input="a", encoding_format="int8")
    assert excinfo.value.param == "encoding_format"


def _response(**body: Any) -> dict[str, Any]:
    parsed = parse(**body)
    vectors = [[0.25, -1.5, 3.0e-7], [1.0, 0.0, -0.1]]
    return ENDPOINT.to_response(parsed, Embeddings(vectors[: len(parsed.inputs())], 9))


def test_float_response_matches_the_sdk_and_the_openapi_schema() -> None:
    body = _response(input=["a", "b"])
    assert SDKEmbeddingResponse.model_validate(body).to_dict() == body
    assert_matches("CreateEmbeddingResponse", body)
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][1]["embedding"] == [1.0, 0.0, -0.1]
    assert body["usage"] == {"prompt_tokens": 9, "total_tokens": 9}


def test_base64_is_little_endian_float32() -> None:
    body = _response(input=["a", "b"], encoding_format="base64")
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = array.array("f")
    decoded.frombytes(raw)
    assert len(raw) == 3 * 4
    assert list(decoded) == list(array.array("f", [0.25, -1.5, 3.0e-7]))
    assert raw[:4] == b"\x00\x00\x80\x3e"  # 0.25 as little-endian float32


def test_model_problem_names_what_each_model_serves() -> None:
    problem = endpoints.model_problem("/v1/chat/completions", "emb", "embed")
    assert problem is not None
    assert "'emb' is an embeddings model: it serves /v1/embeddings" in problem
    reverse = endpoints.model_problem(URL, "chat", "generate")
    assert reverse is not None and "/v1/chat/completions, /v1/completions" in reverse
    assert endpoints.model_problem(URL, "emb", "embed") is None
    assert endpoints.model_problem("/v1/responses", "chat", "generate") is None


def test_registry_serves_the_embedded_embeddings_model(tmp_path: Any) -> None:
    registry = Registry(make_settings(tmp_path))
    spec = registry.get(DEFAULT_EMBEDDING_MODEL)
    assert (spec.engine, spec.task) == ("embeddings", "embed")
    assert registry.get(DEFAULT_CHAT_MODEL).task == "generate"
    folder = registry.weights_dir(spec)
    assert (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("url", "body", "says"),
    [
        (URL, {"model": DEFAULT_CHAT_MODEL, "input": "hi"}, "is a text generation model"),
        (
            "/v1/chat/completions",
            {"model": DEFAULT_EMBEDDING_MODEL, "messages": [{"role": "user", "content": "hi"}]},
            "is an embeddings model",
        ),
    ],
)
def test_a_batch_line_asking_the_wrong_kind_of_model_is_a_per_line_400(
    tmp_path: Any, url: str, body: dict[str, Any], says: str
) -> None:
    registry = Registry(make_settings(tmp_path))

    def check_model(model: str, url: str) -> str | None:
        return endpoints.model_problem(url, model, registry.get(model).task)

    line = {"custom_id": "a", "method": "POST", "url": url, "body": body}
    validator = FileValidator(url, LimitSettings(), has_model=registry.has, check_model=check_model)
    (number, chunk), *_ = iter_lines(io.BytesIO(json.dumps(line).encode()), 1 << 20)
    accepted = validator.feed(number, chunk)
    assert not validator.finish()  # a model of the wrong kind fails its line, not the file
    assert accepted is not None and accepted.error_body is not None
    error = accepted.error_body["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
    assert says in error["message"]
