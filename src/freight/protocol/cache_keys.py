"""Which requests the result cache may answer, and the key it finds their answers by.

A request is cacheable when its answer is fully determined by its inputs, judged by each
endpoint's own defaults (a field left out means the API's default, never 0):

- /v1/chat/completions, /v1/completions: `temperature` defaults to 1, so the request must
  say `temperature: 0`, or give an explicit `seed` (vLLM then draws its samples from that
  seed alone); and `n` (default 1) must be 1. `best_of` is refused by validation.
- /v1/responses, /v1/messages (Anthropic): `temperature` defaults to 1 and there is no
  seed, so only `temperature: 0` is cacheable.
- /v1/embeddings: an embedding is a function of the text and the weights: always cacheable.
- any other endpoint: never.

The key is a sha256 of the canonical JSON (sorted keys, no spaces) of the project, the
model's weights id (engines/weights.py), the endpoint and the whole body; `custom_id` is
not part of the body, so lines that differ only there share a key. Numerically, "the same
inputs" is what Freight can promise: the engine in bf16 may give a greedy request another
answer beside another batch (design.md, Determinism); a cached answer is the one the model
gave to this identical request, not a re-run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from freight.protocol.batch_input import AcceptedLine
from freight.store import batches

SAMPLED_WITH_SEED = ("/v1/chat/completions", "/v1/completions")
TEMPERATURE_ONLY = ("/v1/responses", "/v1/messages")
ALWAYS = ("/v1/embeddings",)

KeyOf = Callable[[AcceptedLine], str | None]


def _is_zero(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def is_deterministic(url: str, body: dict[str, Any]) -> bool:
    """Whether `body` sent to `url` has one answer for given weights (module docstring)."""
    if url in ALWAYS:
        return True
    if url in SAMPLED_WITH_SEED:
        n = body.get("n")
        if n is not None and n != 1:
            return False
        seed = body.get("seed")
        has_seed = isinstance(seed, int) and not isinstance(seed, bool)
        return _is_zero(body.get("temperature")) or has_seed
    if url in TEMPERATURE_ONLY:
        return _is_zero(body.get("temperature"))
    return False


def cache_key(project: str, weights: str, url: str, body: dict[str, Any]) -> str:
    """The key a request's answer is stored and found by (64 hex characters)."""
    canonical = json.dumps(
        [project, weights, url, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_of(project: str, weights_of: Callable[[str], str | None]) -> KeyOf:
    """A function giving each accepted line of `project`'s batch its key, or None when it
    is not cacheable: an invalid line, a nondeterministic body, or unknown weights.
    `weights_of(model)` is looked up once per model."""
    weights: dict[str, str | None] = {}

    def key(accepted: AcceptedLine) -> str | None:
        if accepted.error_body is not None or accepted.model is None:
            return None
        if not is_deterministic(accepted.url, accepted.body):
            return None
        if accepted.model not in weights:
            weights[accepted.model] = weights_of(accepted.model)
        found = weights[accepted.model]
        return None if found is None else cache_key(project, found, accepted.url, accepted.body)

    return key


def keys_for(
    is_enabled: bool, weights_of: Callable[[str], str | None]
) -> Callable[[batches.BatchRecord], KeyOf | None]:
    """Each batch's `key_of` at ingest: None when the deployment's `[cache] enabled` is
    false or the batch was created with `cache: false` (then none of its requests is
    answered from the cache, nor answers later ones)."""

    def keys(batch: batches.BatchRecord) -> KeyOf | None:
        if not is_enabled or not batch.cache:
            return None
        return key_of(batch.project, weights_of)

    return keys
