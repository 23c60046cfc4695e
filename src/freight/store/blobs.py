"""Where file contents live: a directory on local disk, written atomically."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class BlobStore:
    """File bodies by name. A blob becomes visible only once completely written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    @contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        """Write `name` through a temporary file renamed into place on success."""
        tmp = self.root / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(name))
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, name: str) -> BinaryIO:
        return open(self.path(name), "rb")

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)


# Blobs of Anthropic Message Batches, named after the batch: no `files` row points at
# them (they are not OpenAI files), so the name is how the worker and the API find them.


def message_batch_requests(batch_id: str) -> str:
    """The create body as received, kept until the worker has queued its requests."""
    return f"{batch_id}.requests.json"


def message_batch_results(batch_id: str) -> str:
    """The results JSONL, written once when processing ends."""
    return f"{batch_id}.results.jsonl"
