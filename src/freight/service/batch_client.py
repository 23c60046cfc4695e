"""A Freight server's files and batches API over HTTP, as its clients call it.

The `freight files` and `freight batches` commands (cli/client.py) and `freight.map`
with a `base_url` talk to a server through `BatchClient`; a refusal or an unreachable
server is a `ServerError` carrying the server's own message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from freight.errors import FreightError
from freight.store import batches
from freight.store.statuses import BatchStatus

TIMEOUT_SECONDS = 120


class ServerError(FreightError):
    """The server refused the request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal; None: no answer at all


@dataclass(frozen=True)
class ResultsPage:
    """A page of a batch's result lines as they land, and the cursor after it."""

    body: bytes  # whole JSONL lines
    next_cursor: str
    is_complete: bool  # the batch has ended and no line is left
    batch_status: str


class BatchClient:
    """The /v1 API of the Freight server at `base_url`."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; its JSON body, or its bytes when it is not JSON."""
        response = self._send(method, path, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def upload(self, path: Path, purpose: str = "batch") -> dict[str, Any]:
        """Upload the file at `path`; the file object."""
        with open(path, "rb") as fh:
            obj: dict[str, Any] = self.call(
                "POST",
                "/files",
                data={"purpose": purpose},
                files={"file": (path.name, fh, "application/jsonl")},
            )
        return obj

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        *,
        window: str = "24h",
        metadata: dict[str, str] | None = None,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """Create a batch of an uploaded file; the batch object. `priority`: Freight's
        extension (higher runs first), sent only when given."""
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": window,
        }
        if metadata:
            body["metadata"] = metadata
        if priority is not None:
            body["priority"] = priority
        batch: dict[str, Any] = self.call("POST", "/batches", json=body)
        return batch

    def batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object as it is now."""
        batch: dict[str, Any] = self.call("GET", f"/batches/{batch_id}")
        return batch

    def wait(
        self, batch_id: str, *, poll_seconds: float = 1.0, console: Console | None = None
    ) -> dict[str, Any]:
        """Poll a batch until it has ended, with a progress bar on `console` if given;
        the ended batch."""
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, disable=console is None) as progress:
            task = progress.add_task(BatchStatus.VALIDATING, total=None)
            while True:
                batch = self.batch(batch_id)
                counts = batch["request_counts"]
                progress.update(
                    task,
                    description=batch["status"],
                    total=counts["total"] or None,
                    completed=counts["completed"] + counts["failed"],
                )
                if batch["status"] in batches.TERMINAL:
                    return batch
                time.sleep(poll_seconds)

    def results_page(
        self, batch_id: str, *, after: str | None = None, limit: int | None = None
    ) -> ResultsPage:
        """One page of GET /v1/batches/{id}/results (a Freight extension)."""
        params: dict[str, str | int] = {}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        response = self._send("GET", f"/batches/{batch_id}/results", params=params)
        return ResultsPage(
            body=response.content,
            next_cursor=response.headers.get("freight-next-cursor", after or ""),
            is_complete=response.headers.get("freight-results-complete") == "true",
            batch_status=response.headers.get("freight-batch-status", ""),
        )

    def download(self, file_id: str, output: Path) -> None:
        """Write a file's content to `output`, streamed."""
        with self._content(file_id) as response, open(output, "wb") as fh:
            for chunk in response.iter_bytes():
                fh.write(chunk)

    def first_line(self, file_id: str) -> bytes:
        """A file's first line, without downloading the rest."""
        with self._content(file_id) as response:
            for line in response.iter_lines():
                return line.encode()
        return b""

    @contextlib.contextmanager
    def _content(self, file_id: str) -> Iterator[httpx.Response]:
        """A file's content, read as it arrives."""
        url = f"{self.base_url}/files/{file_id}/content"
        try:
            with httpx.stream("GET", url, headers=self._headers, timeout=TIMEOUT_SECONDS) as got:
                if got.status_code >= 400:
                    got.read()
                    _raise_for_refusal(got)
                yield got
        except httpx.ConnectError as exc:
            raise ServerError(
                f"cannot reach Freight at {self.base_url} ({exc}): start it with `freight "
                "serve`, or give its URL with --base-url (or $FREIGHT_BASE_URL)"
            ) from None
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach Freight at {self.base_url}: {exc}") from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(
                method,
                self.base_url + path,
                headers=self._headers,
                timeout=TIMEOUT_SECONDS,
                **kwargs,
            )
        except httpx.ConnectError as exc:
            raise ServerError(
                f"cannot reach Freight at {self.base_url} ({exc}): start it with `freight "
                "serve`, or give its URL with --base-url (or $FREIGHT_BASE_URL)"
            ) from None
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach Freight at {self.base_url}: {exc}") from None
        _raise_for_refusal(response)
        return response


def _raise_for_refusal(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    if response.status_code == 401:
        message += (
            " (pass a valid key with --api-key or $FREIGHT_API_KEY; `freight keys create` "
            "on the server's machine makes one)"
        )
    raise ServerError(message, status=response.status_code)
