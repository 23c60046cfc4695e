"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

Sign in, upload a JSONL file, create a batch, watch its progress bar reach 100%, download
the output. Screenshots of each step go to test-artifacts/dashboard/ (git-ignored).
Playwright never downloads a browser here: it drives /usr/bin/chromium (`make install`
installs it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from freight.config import PricingSettings, WorkerSettings
from freight.engines.echo import EchoEngine
from freight.engines.pool import EnginePool
from freight.engines.registry import Registry
from freight.protocol import openai_wire
from freight.service.runtime import Service
from tests.conftest import REPO, LiveServer, chat_line, make_settings, write_jsonl
from tests.sdk import batch_lines

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def progress_now(page: Page) -> int | None:
    """The batch page's progress bar value, or None while the page is reloading."""
    try:
        value = page.get_attribute(".progress.big .bar", "aria-valuenow", timeout=1000)
    except Exception:  # navigation in progress: the element is being replaced
        return None
    return None if value is None else int(value)


def has_result_links(page: Page) -> bool:
    try:
        return page.query_selector("a.button[href^='/ui/files/']") is not None
    except Exception:  # the page is reloading (the batch just ended)
        return False


def run_batch_in_the_browser(
    page: Page, server: LiveServer, input_path: Path, tmp_path: Path, name: str, timeout: float
) -> tuple[list[int], list[dict[str, Any]]]:
    """The whole flow; returns the progress values seen and the downloaded output lines."""
    page.goto(server.base_url + "/")
    assert page.url.endswith("/ui/login")  # not signed in: the form
    shot(page, f"{name}-1-login")
    page.fill("#api_key", "sk-dashboard-test")
    page.click("button[type=submit]")
    page.wait_for_url(server.base_url + "/")
    page.set_input_files("input[type=file]", str(input_path))
    page.select_option("select[name=endpoint]", "/v1/chat/completions")
    shot(page, f"{name}-2-upload")
    page.click("form.upload button[type=submit]")
    page.wait_for_url("**/ui/batches/batch_*")
    batch_id = page.url.rsplit("/", 1)[-1]
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while not has_result_links(page):
        value = progress_now(page)
        if value is not None and (not seen or value != seen[-1]):
            seen.append(value)
            if 0 < value < 100 and len(seen) == 2:
                shot(page, f"{name}-3-running")
        assert time.monotonic() < deadline, f"batch {batch_id} stuck at {seen[-1:]}"
        page.wait_for_timeout(100)
    seen.append(progress_now(page) or 0)
    shot(page, f"{name}-4-completed")
    assert page.inner_text("[data-field=status]") == "completed"
    with page.expect_download() as download_info:
        page.click("a.button:has-text('Output file')")
    download = download_info.value
    target = tmp_path / f"{name}-output.jsonl"
    download.save_as(target)
    lines = batch_lines(target.read_text())
    page.goto(server.base_url + "/")
    row = page.locator(f"tr[data-batch-id='{batch_id}']")
    assert row.locator("[data-field=status]").inner_text() == "completed"
    assert row.locator("[data-field=percent]").inner_text() == "100%"
    shot(page, f"{name}-5-batches")
    page.click("text=Cost")
    page.wait_for_url("**/ui/cost")
    shot(page, f"{name}-6-cost")
    return seen, lines


def test_upload_create_watch_and_download_in_chromium(page: Page, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home",
        worker=WorkerSettings(poll_seconds=0.05, flush_seconds=0.02, max_in_flight=2),
        pricing=PricingSettings(input_price=0.15, output_price=0.6),
    )
    pool = EnginePool(settings, Registry(settings))
    pool.add(EchoEngine("echo", delay_seconds=0.03))
    server = LiveServer(Service(settings, engines=pool)).start()
    try:
        lines = [chat_line(f"r{i}", f"label review {i} please", model="echo") for i in range(150)]
        input_path = write_jsonl(tmp_path / "reviews.jsonl", lines)
        seen, output = run_batch_in_the_browser(page, server, input_path, tmp_path, "echo", 120)
    finally:
        server.stop()
    assert seen[0] < 100 and seen[-1] == 100, seen  # the bar moved from the start to the end
    assert seen == sorted(seen), seen  # and never backwards
    assert len(seen) >= 3, seen  # it was seen in between too: the page updated live
    assert sorted(x["custom_id"] for x in output) == sorted(x["custom_id"] for x in lines)
    for line in output:
        openai_wire.BatchRequestOutput.model_validate(line)
        assert line["response"]["status_code"] == 200


@pytest.mark.slow
def test_real_engine_batch_from_the_dashboard(
    page: Page, real_server: LiveServer, tmp_path: Path
) -> None:
    lines = [
        chat_line(f"review-{i}", f"Is this review positive or negative? '{text}'", max_tokens=12)
        for i, text in enumerate(
            [
                "Great battery life, I love it.",
                "Broke after two days.",
                "Does what it says.",
                "Terrible support, never again.",
                "Fast shipping and well made.",
                "The colour faded quickly.",
            ]
        )
    ]
    input_path = write_jsonl(tmp_path / "reviews.jsonl", lines)
    seen, output = run_batch_in_the_browser(page, real_server, input_path, tmp_path, "real", 600)
    assert seen[-1] == 100 and seen == sorted(seen), seen
    assert sorted(x["custom_id"] for x in output) == [f"review-{i}" for i in range(6)]
    for line in output:
        body = openai_wire.BatchRequestOutput.model_validate(line).response
        assert body is not None and body.status_code == 200
        assert body.body["choices"][0]["message"]["content"].strip()
        assert body.body["usage"]["completion_tokens"] > 0
