"""Cost, metrics and the dashboard on the real engine: docs/guides/economics.md's pictures.

    python examples/dashboard_tour.py HOME [--screenshot docs/dashboard.png]

Starts `freight serve` on HOME (with the prices below in HOME/freight.toml unless one is
there), runs two batches through the official SDK (the 60-review classification file, then
40 short product descriptions), takes a screenshot of the dashboard in headless Chromium
while the second batch runs, scrapes /metrics, stops the server, and prints
`freight report` for HOME. Run it again on the same HOME to add to the history.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

HERE = Path(__file__).resolve().parent
REVIEWS = HERE / "classify-reviews.jsonl"
MODEL = "smollm2-135m-instruct"
# Reference prices: a small hosted model's list price (real time, $ per 1M tokens) and an
# assumed price for this class of machine; edit HOME/freight.toml to use your own.
PRICING = """[pricing]
input_price = 0.15
output_price = 0.60
batch_discount = 0.5
hardware_per_hour = 0.10
"""
PRODUCTS = [
    "a steel water bottle", "noise-cancelling headphones", "a cast-iron pan", "a desk lamp",
    "running shoes", "a wool blanket", "a chef's knife", "a phone tripod",
    "a hiking backpack", "a coffee grinder",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descriptions_file(path: Path) -> Path:
    with open(path, "w") as fh:
        for i in range(40):
            body = {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": f"Write one sentence selling {PRODUCTS[i % 10]}."}
                ],
                "max_tokens": 48,
                "temperature": 0.7,
                "seed": i,
            }
            line = {"custom_id": f"desc-{i:03d}", "method": "POST", "url": "/v1/chat/completions"}
            fh.write(json.dumps({**line, "body": body}) + "\n")
    return path


def submit(client: openai.OpenAI, path: Path) -> str:
    with open(path, "rb") as fh:
        uploaded = client.files.create(file=fh, purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    ).id


def wait(client: openai.OpenAI, batch_id: str) -> None:
    while client.batches.retrieve(batch_id).status not in ("completed", "failed", "expired"):
        time.sleep(0.5)


def screenshot(base: str, path: Path, batch_id: str) -> None:
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page(viewport={"width": 1440, "height": 640})
        page.goto(f"{base}/ui/login")
        page.fill("#api_key", "tour")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        # a moment in the middle of the run: the bar part way
        page.wait_for_function(
            f"""() => {{ const r = document.querySelector("tr[data-batch-id='{batch_id}'] .bar");
                 const v = r && Number(r.getAttribute('aria-valuenow'));
                 return v >= 25 && v < 100; }}""",
            timeout=600_000,
        )
        page.wait_for_timeout(600)  # let the bar's width transition finish
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    home: Path = args.home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "freight.toml").exists():
        (home / "freight.toml").write_text(PRICING)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FREIGHT_METRICS__USAGE_RECORD_SECONDS": "2"}
    with open(home / "tour.log", "a") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "freight.cli.main", "serve", "--home", str(home), "--port",
             str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 900
            while True:
                try:
                    if MODEL in httpx.get(f"{base}/health", timeout=5).json()["engines"]:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"freight serve did not start; see {home / 'tour.log'}")
                time.sleep(1)
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="tour")
            started = time.monotonic()
            wait(client, submit(client, REVIEWS))
            print(f"reviews batch: {time.monotonic() - started:.1f} s")
            started = time.monotonic()
            second = submit(client, descriptions_file(home / "descriptions.jsonl"))
            if args.screenshot:
                screenshot(base, args.screenshot, second)
                print(f"wrote {args.screenshot}")
            wait(client, second)
            print(f"descriptions batch: {time.monotonic() - started:.1f} s")
            metrics = httpx.get(f"{base}/metrics").text
            for line in metrics.splitlines():
                if line.startswith(("freight_generation_tokens_total", "freight_engine_util")):
                    print(line)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    subprocess.run(
        [sys.executable, "-m", "freight.cli.main", "report", "--home", str(home), "--days", "1"],
        check=True,
        env={**os.environ, "COLUMNS": "180"},
    )


if __name__ == "__main__":
    main()
