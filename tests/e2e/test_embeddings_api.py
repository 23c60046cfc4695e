"""/v1/embeddings end to end: the official SDK, the real server, the real embeddings model.

One server serves the module (`echo_server`); its registry always holds the
embedded `all-minilm-l6-v2`, which runs in-process through sentence-transformers, so
these tests need no vLLM engine.
"""

from __future__ import annotations

import array
import json
import math
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse as SDKEmbeddingResponse

from freight.config import DEFAULT_EMBEDDING_MODEL
from freight.engines.registry import find_minilm_dir
from tests.conftest import LiveServer, chat_line, wait_for_batch, write_jsonl
from tests.sdk import decoded_embeddings, floats, output_lines
from tests.spec import assert_matches

MODEL = DEFAULT_EMBEDDING_MODEL
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embed-reviews.jsonl"
TEXTS = ["Fast shipping, well packaged.", "The zipper broke on day one.", "It's fine."]


@pytest.fixture
def echo_server(module_echo_server: LiveServer) -> LiveServer:
    """The module's one server (its embeddings model loads once): each test here reads
    only the answers to what it sent."""
    return module_echo_server


@pytest.fixture(scope="module")
def reference() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(find_minilm_dir()), local_files_only=True)


def cosine(a: list[float], b: Any) -> float:
    dot = sum(x * float(y) for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(float(y) ** 2 for y in b)))


def same_vector(a: list[float], b: list[float]) -> bool:
    """Equal up to float32 rounding: a text's vector may differ in its last digits with the
    other inputs it was batched with (padding, kernel choice), as in any batched model."""
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


def check_round_trip(body: dict[str, Any]) -> None:
    """The body parses as the SDK's CreateEmbeddingResponse and serialises back the same.

    base64 vectors are decoded first, as the SDK does: its type declares floats only.
    """
    decoded = decoded_embeddings(body)
    assert SDKEmbeddingResponse.model_validate(decoded).to_dict() == decoded
    assert_matches("CreateEmbeddingResponse", decoded)


def test_embeddings_create_float_and_base64_single_and_list(echo_server: LiveServer) -> None:
    client = echo_server.openai()
    single = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float")
    assert isinstance(single, SDKEmbeddingResponse)
    assert (single.object, single.model, len(single.data)) == ("list", MODEL, 1)
    assert len(single.data[0].embedding) == 384 and single.data[0].index == 0
    assert single.usage.prompt_tokens == single.usage.total_tokens > 2

    many = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2]
    assert same_vector(many.data[0].embedding, single.data[0].embedding)
    assert many.usage.prompt_tokens > single.usage.prompt_tokens

    packed = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")
    for as_text, as_float in zip(packed.data, many.data, strict=True):
        assert isinstance(as_text.embedding, str)  # the SDK hands base64 back as it came
        assert floats(as_text.embedding) == list(array.array("f", as_float.embedding))
    # Without encoding_format the SDK asks for base64 and decodes it to floats itself.
    default = client.embeddings.create(model=MODEL, input=TEXTS)
    assert [d.embedding for d in default.data] == [floats(d.embedding) for d in packed.data]

    for encoding in ("float", "base64"):
        raw = httpx.post(
            f"{echo_server.base_url}/v1/embeddings",
            json={"model": MODEL, "input": TEXTS, "encoding_format": encoding},
        ).json()
        check_round_trip(raw)


def test_api_vectors_equal_sentence_transformers_called_directly(
    echo_server: LiveServer, reference: Any
) -> None:
    client = echo_server.openai()
    result = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    expected = reference.encode(TEXTS)
    for got, want in zip(result.data, expected, strict=True):
        assert cosine(got.embedding, want) >= 0.999
    token_ids = reference.tokenizer(TEXTS)["input_ids"]
    assert result.usage.prompt_tokens == sum(len(t) for t in token_ids)


def test_token_arrays_are_read_in_the_models_own_vocabulary(
    echo_server: LiveServer, reference: Any
) -> None:
    client = echo_server.openai()
    token_ids = reference.tokenizer(TEXTS)["input_ids"]
    by_ids = client.embeddings.create(model=MODEL, input=token_ids, encoding_format="float")
    one = client.embeddings.create(model=MODEL, input=token_ids[0], encoding_format="float")
    expected = reference.encode(TEXTS)
    for got, want in zip(by_ids.data, expected, strict=True):
        assert cosine(got.embedding, want) >= 0.999
    assert same_vector(one.data[0].embedding, by_ids.data[0].embedding)
    assert by_ids.usage.prompt_tokens == sum(len(t) for t in token_ids)


@pytest.mark.parametrize(
    ("body", "status", "param", "code", "says"),
    [
        ({"input": ""}, 400, "input", None, "non-empty string"),
        ({"input": ["a", 3]}, 400, "input", None, "lists of token ids"),
        ({"input": ["a"] * 2049}, 400, "input", None, "up to 2048"),
        ({"input": "a", "dimensions": 64}, 400, None, None, "384-dimensional"),
        ({"input": "word " * 300}, 400, None, "context_length_exceeded", "at most 256 tokens"),
        ({"input": [[101, 99999999]]}, 400, None, None, "outside the model's vocabulary"),
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format", None, "base64"),
        ({"input": "a", "model": "echo"}, 400, "model", "model_not_supported", "serves"),
        ({"input": "a", "model": "nope"}, 404, "model", "model_not_found", "does not exist"),
    ],
)
def test_bad_embeddings_requests_get_a_clear_error(
    echo_server: LiveServer,
    body: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
    says: str,
) -> None:
    response = httpx.post(f"{echo_server.base_url}/v1/embeddings", json={"model": MODEL, **body})
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert says in error["message"]


def test_an_embeddings_model_asked_for_chat_or_responses_is_a_400(
    echo_server: LiveServer,
) -> None:
    client = echo_server.openai()
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.responses.create(model=MODEL, input="hello")
    assert excinfo.value.code == "model_not_supported"
    assert "is an embeddings model: it serves /v1/embeddings" in excinfo.value.message


def test_embeddings_batch_round_trips_the_sdk_types(
    echo_server: LiveServer, tmp_path: Path, reference: Any
) -> None:
    client = echo_server.openai()
    lines = [json.loads(x) for x in EXAMPLE.read_text().splitlines()][:12]
    lines[1]["body"]["encoding_format"] = "base64"
    lines[2]["body"]["input"] = [lines[2]["body"]["input"], "and a second text"]
    lines.append(
        {
            "custom_id": "too-long",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": "word " * 300},
        }
    )
    uploaded = client.files.create(file=write_jsonl(tmp_path / "e.jsonl", lines), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id, timeout=120)
    assert batch.status == "completed" and batch.model == MODEL
    assert (batch.request_counts.completed, batch.request_counts.failed) == (12, 1)
    results = output_lines(client, batch.output_file_id)
    errors = output_lines(client, batch.error_file_id)
    by_id = {r["custom_id"]: r for r in results + errors}
    assert sorted(by_id) == sorted(x["custom_id"] for x in lines)
    texts = {x["custom_id"]: x["body"]["input"] for x in lines}
    for line in results:
        body = line["response"]["body"]
        check_round_trip(body)
        inputs = texts[line["custom_id"]]
        inputs = inputs if isinstance(inputs, list) else [inputs]
        for item, want in zip(body["data"], reference.encode(inputs), strict=True):
            vector = item["embedding"]
            vector = floats(vector) if isinstance(vector, str) else vector
            assert cosine(vector, want) >= 0.999
    assert isinstance(by_id[lines[1]["custom_id"]]["response"]["body"]["data"][0]["embedding"], str)
    assert len(by_id[lines[2]["custom_id"]]["response"]["body"]["data"]) == 2
    too_long = by_id["too-long"]["response"]
    assert too_long["status_code"] == 400
    assert too_long["body"]["error"]["code"] == "context_length_exceeded"
    prompt_tokens = sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in results)
    assert batch.usage is not None and batch.usage.input_tokens == prompt_tokens
    assert batch.usage.output_tokens == 0


def test_a_chat_batch_naming_the_embeddings_model_fails_each_line_with_a_400(
    echo_server: LiveServer, tmp_path: Path
) -> None:
    client = echo_server.openai()
    lines = [chat_line(f"c{i}", "hello", model=MODEL) for i in range(2)]
    uploaded = client.files.create(file=write_jsonl(tmp_path / "c.jsonl", lines), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for_batch(client, batch.id, timeout=60)
    assert batch.status == "completed" and batch.output_file_id is None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (0, 2)
    for line in output_lines(client, batch.error_file_id):
        assert line["response"]["status_code"] == 400
        error = line["response"]["body"]["error"]
        assert (error["param"], error["code"]) == ("model", "model_not_supported")
