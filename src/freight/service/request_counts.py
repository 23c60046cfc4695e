"""Line by line counts of an estimate: prompt tokens, output ceilings, expected output.

Each accepted line's body is parsed and translated exactly as the worker does
(protocol/endpoints.py), and its prompts counted with the model's TokenCounter. A body
the worker would answer with an error line (one the translation refuses, a prompt the
engine refuses for its context length) counts as invalid, not as a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from freight.engines.base import GenerationRequest
from freight.errors import FreightError
from freight.protocol import endpoints
from freight.service.token_counts import TokenCounter
from freight.usage import forecast


@dataclass
class Tally:
    """What the lines counted so far add up to (None: not known for every line)."""

    num_requests: int = 0
    num_invalid: int = 0
    num_over_context: int = 0
    num_without_max_tokens: int = 0
    prompt_tokens: int = 0
    ceiling: int | None = 0
    expected: float | None = 0.0


@dataclass(frozen=True)
class LineCount:
    """One request: its prompt tokens, its output ceiling (None: no max_tokens and no
    known context), whether every prompt has its own max_tokens, and whether the engine
    would refuse it for its context length."""

    prompt_tokens: int
    ceiling: int | None
    is_capped: bool = True
    is_over_context: bool = False


class RequestCounts:
    """The counts of one model's requests at one endpoint, added line by line."""

    def __init__(
        self,
        endpoint: endpoints.AnyEndpoint,
        model: str,
        counter: TokenCounter,
        history: forecast.PerRequest,
    ) -> None:
        self.endpoint = endpoint
        self.model = model
        self.counter = counter
        self.history = history
        self.tally = Tally()

    def add(self, body: dict[str, Any]) -> None:
        tally = self.tally
        try:
            parsed = endpoints.parse_body(self.endpoint, body, in_batch=True)
            if isinstance(self.endpoint, endpoints.EmbeddingsEndpoint):
                request = self.endpoint.to_request(parsed, "estimate")
                count = LineCount(self.counter.embedding_inputs(request), 0)
            else:
                count = self._generations(self.endpoint.to_generations(parsed, "estimate"))
        except FreightError:  # a body the worker would answer with an error line
            tally.num_invalid += 1
            return
        if count.is_over_context:
            tally.num_invalid += 1
            tally.num_over_context += 1
            return
        tally.num_requests += 1
        tally.prompt_tokens += count.prompt_tokens
        tally.num_without_max_tokens += not count.is_capped
        if tally.ceiling is not None:
            tally.ceiling = None if count.ceiling is None else tally.ceiling + count.ceiling
        # embeddings generate nothing; text generation is expected to give the history's
        # mean, within the request's ceiling
        mean = self.history.mean_tokens if self.endpoint.task == "generate" else 0.0
        expected = forecast.expected_for(count.ceiling, mean)
        if tally.expected is not None:
            tally.expected = None if expected is None else tally.expected + expected

    def _generations(self, work: list[GenerationRequest]) -> LineCount:
        """A request's prompts (one per generation), counted, with the engine's checks:
        it refuses a prompt that leaves no room, or a max_tokens larger than the room."""
        context = self.counter.context.num_tokens
        prompt, is_capped = 0, True
        ceiling: int | None = 0
        for generation in work:
            num_prompt = self.counter.prompt(generation)
            prompt += num_prompt
            limit = generation.sampling.max_tokens
            room = None if context is None else context - num_prompt
            if room is not None and (room <= 0 or (limit is not None and limit > room)):
                return LineCount(prompt, None, is_over_context=True)
            if limit is None:
                is_capped = False
                limit = room
            if ceiling is not None:
                ceiling = None if limit is None else ceiling + limit * generation.sampling.n
        return LineCount(prompt, ceiling, is_capped)
