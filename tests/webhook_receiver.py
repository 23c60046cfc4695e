"""A webhook receiver on a loopback port that verifies each delivery with the `openai` SDK.

It answers (after `delay_seconds`) 500 with `failure_body` to its first `num_failures`
requests, then 200 to those whose signature `client.webhooks.unwrap` accepts (400
otherwise), as a real receiver would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai


@dataclass(frozen=True)
class Received:
    webhook_id: str
    body: bytes
    headers: dict[str, str]


class WebhookReceiver:
    def __init__(
        self, *, num_failures: int = 0, delay_seconds: float = 0.0, failure_body: bytes = b""
    ) -> None:
        self.secret: str | None = None
        self.num_failures = num_failures
        self.failure_body = failure_body
        self.delay_seconds = delay_seconds
        self.requests: list[Received] = []
        self.events: list[Any] = []  # what unwrap returned, for accepted deliveries
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        self._client = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver._receive(body, dict(self.headers.items()))
                answer = receiver.failure_body if status == 500 else b""
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        time.sleep(self.delay_seconds)  # a slow receiver
        with self._lock:
            self.requests.append(Received(headers.get("webhook-id", ""), body, headers))
            if len(self.requests) <= self.num_failures:
                return 500
            try:
                event = self._client.webhooks.unwrap(body, headers, secret=self.secret)
            except Exception as exc:  # a bad signature, a missing header
                self.rejected.append(repr(exc))
                return 400
            self.events.append(event)
            return 200

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts_per_id(self) -> Counter[str]:
        with self._lock:
            return Counter(r.webhook_id for r in self.requests)

    def wait_for_events(self, num: int, timeout: float = 30) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.events) >= num:
                    return list(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(self.events)} of {num} webhook events arrived in {timeout} s "
                    f"({len(self.requests)} requests, rejected: {self.rejected})"
                )
            time.sleep(0.02)
