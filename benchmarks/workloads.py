"""Reproducible batch input files for the benchmarks (seeded; same seed, same file).

python -m benchmarks.workloads mixed 256 out.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
TOPICS = [
    "a lighthouse keeper",
    "quarterly sales figures",
    "a broken bicycle",
    "the history of tea",
    "a rainy afternoon",
    "a software outage",
    "learning the violin",
    "a mountain village",
    "solar panels",
    "a lost passport",
    "the first day at school",
    "a chess tournament",
    "bread baking",
    "a city marathon",
    "an old photograph",
    "migrating birds",
]
WORDS = (
    "the service team reviewed every order shipped last week and found that most customers "
    "were satisfied although some deliveries arrived late because of weather and a few items "
    "were damaged in transit which the warehouse has since repacked with stronger boxes"
).split()


def _filler(rng: random.Random, num_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(num_words))


def line(
    custom_id: str, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.0
) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        },
    }


def mixed(num: int, seed: int = 0, max_tokens: int = 64) -> list[dict[str, Any]]:
    """Varied chat prompts, 5 to 400 words long."""
    rng = random.Random(seed)
    lines = []
    for i in range(num):
        context = _filler(rng, rng.randint(5, 400))
        topic = rng.choice(TOPICS)
        prompt = f"Notes: {context}\n\nWrite a short paragraph about {topic}."
        lines.append(line(f"mixed-{i}", [{"role": "user", "content": prompt}], max_tokens))
    return lines


WORKLOADS = {"mixed": mixed}


def write(lines: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w") as fh:
        for obj in lines:
            fh.write(json.dumps(obj) + "\n")
    return path


if __name__ == "__main__":
    name, count, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    write(WORKLOADS[name](count), out)
