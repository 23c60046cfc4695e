"""Reproducible batch input files for the benchmarks (seeded: same seed, same file).

python -m benchmarks.workloads NAME COUNT OUT.jsonl      NAME: mixed, shared-prefix,
                                                         duplicates, long-tail, short
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
LARGE_LINES = 1000  # wall files above this many lines run --large-repeats times
REVIEWS = Path(__file__).resolve().parent.parent / "examples" / "classify-reviews.jsonl"
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
Lines = list[dict[str, Any]]


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


def _reviews() -> list[str]:
    texts = []
    for raw in REVIEWS.read_text().splitlines():
        content = json.loads(raw)["body"]["messages"][-1]["content"]
        texts.append(content.removeprefix("Review: ").split("\nSentiment:")[0])
    return texts


def mixed(num: int, seed: int = 0, max_tokens: int = 64) -> Lines:
    """Varied chat prompts, 5 to 400 words long, each asking for a short paragraph."""
    rng = random.Random(seed)
    lines = []
    for i in range(num):
        context = _filler(rng, rng.randint(5, 400))
        prompt = f"Notes: {context}\n\nWrite a short paragraph about {rng.choice(TOPICS)}."
        lines.append(line(f"mixed-{i}", [{"role": "user", "content": prompt}], max_tokens))
    return lines


def shared_prefix(num: int, seed: int = 0) -> Lines:
    """Classification: one long instruction with few-shot examples (>= 400 tokens) shared by
    every request, then a short review that differs."""
    rng = random.Random(seed)
    reviews = _reviews()
    labels = [
        "positive",
        "negative",
        "neutral",
        "positive",
        "negative",
        "positive",
        "negative",
        "positive",
        "neutral",
        "negative",
        "positive",
        "negative",
        "positive",
        "positive",
        "negative",
        "neutral",
    ]
    shots = reviews[: len(labels)]
    instruction = (
        "You are a meticulous analyst who labels customer product reviews for an online "
        "store. Read the review and answer with exactly one lowercase word: positive if the "
        "customer is satisfied overall, negative if the customer is dissatisfied, or neutral "
        "if the review is mixed or purely factual. Do not explain your answer. Consider the "
        "product quality, delivery, price and customer service, and weigh the customer's "
        "final verdict most heavily. Here are labelled examples."
    )
    few_shot = "\n".join(
        f"Review: {text}\nLabel: {label}" for text, label in zip(shots, labels, strict=True)
    )
    system = f"{instruction}\n\n{few_shot}"
    lines = []
    for i in range(num):
        review = rng.choice(reviews[len(labels) :])
        detail = rng.choice(
            [
                "",
                " Shipping was quick.",
                " I paid full price.",
                " Bought it as a gift.",
                " Second one I own.",
            ]
        )
        lines.append(
            line(
                f"prefix-{i}",
                [
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"Review: {review}{detail} (order {i})\nLabel:"},
                ],
                max_tokens=4,
            )
        )
    return lines


def duplicates(num: int, seed: int = 0, share: float = 0.3) -> Lines:
    """`mixed` prompts of which `share` are exact copies (body) of an earlier request."""
    rng = random.Random(seed)
    num_unique = num - int(num * share)
    unique = mixed(num_unique, seed=seed)
    lines = [dict(x, custom_id=f"dup-{i}") for i, x in enumerate(unique)]
    for i in range(num_unique, num):
        original = rng.choice(unique)
        lines.append(dict(original, custom_id=f"dup-{i}"))
    rng.shuffle(lines)
    return lines


def long_tail(num: int, seed: int = 0, share_long: float = 0.05, long_tokens: int = 512) -> Lines:
    """Most requests want a one-line answer (max_tokens 16); a few want an essay
    (`long_tokens`, 512; a smoke run asks for less: one essay alone sets its time)."""
    rng = random.Random(seed)
    lines = []
    for i in range(num):
        topic = rng.choice(TOPICS)
        if rng.random() < share_long:
            prompt = f"Write a long, detailed essay of many paragraphs about {topic}."
            lines.append(line(f"tail-{i}", [{"role": "user", "content": prompt}], long_tokens))
        else:
            prompt = f"In one short sentence, what is {topic}? ({i})"
            lines.append(line(f"tail-{i}", [{"role": "user", "content": prompt}], 16))
    return lines


def short(num: int, seed: int = 0, max_tokens: int = 8) -> Lines:
    """One-sentence questions with short answers: the cheapest realistic line, for the
    wall-time view's large files. The seed is in every prompt, so files of different
    seeds share no prompt (a running server's prefix cache cannot serve one from
    another) beyond the chat template and the question's opening words."""
    rng = random.Random(seed)
    return [
        line(
            f"short-{i}",
            [
                {
                    "role": "user",
                    "content": f"In one sentence, what is {rng.choice(TOPICS)}? (case {seed}-{i})",
                }
            ],
            max_tokens,
        )
        for i in range(num)
    ]


WORKLOADS: dict[str, Callable[[int], Lines]] = {
    "mixed": mixed,
    "shared-prefix": shared_prefix,
    "duplicates": duplicates,
    "long-tail": long_tail,
    "short": short,
}


def write(lines: Lines, path: Path) -> Path:
    with open(path, "w") as fh:
        for obj in lines:
            fh.write(json.dumps(obj) + "\n")
    return path


if __name__ == "__main__":
    name, count, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    write(WORKLOADS[name](count), out)
