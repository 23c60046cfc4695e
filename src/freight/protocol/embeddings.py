"""Translation for OpenAI's POST /v1/embeddings: body -> EmbeddingRequest -> embedding list.

Registered in the ENDPOINTS table (protocol/endpoints.py) as an EmbeddingsEndpoint: it
runs on an embeddings engine (engines/embeddings.py), never on a text generation one.
`input` may be a string, a list of strings, token ids or lists of token ids (checked by
`openai.CreateEmbeddingRequest`); vectors come back as floats or, with
`encoding_format: base64`, as OpenAI encodes them.
"""

from __future__ import annotations

import array
import base64
import sys
from typing import Any

from freight.engines.base import EmbeddingRequest, Embeddings
from freight.protocol import openai_wire

URL = "/v1/embeddings"


def to_request(body: openai_wire.CreateEmbeddingRequest, request_id: str) -> EmbeddingRequest:
    return EmbeddingRequest(request_id, body.model, body.inputs(), dimensions=body.dimensions)


def base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32 bytes."""
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def to_response(body: openai_wire.CreateEmbeddingRequest, result: Embeddings) -> dict[str, Any]:
    encode = base64_floats if body.encoding_format == "base64" else None
    return openai_wire.EmbeddingList(
        data=[
            openai_wire.EmbeddingObject(index=i, embedding=encode(v) if encode else v)
            for i, v in enumerate(result.vectors)
        ],
        model=body.model,
        usage=openai_wire.EmbeddingUsage(
            prompt_tokens=result.num_prompt_tokens, total_tokens=result.num_prompt_tokens
        ),
    ).model_dump()
