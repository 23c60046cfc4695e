"""Every body-taking route of a real, memory-capped `freight serve`, thrown the corpus.

For each route (enumerated from the app, routes.py) and each hostile body (cases.py):
the answer is a 4xx in the route's API error shape (a page on the dashboard) or a 2xx
where the input is acceptable, never a 5xx; what is not a JSON object is refused; the
process stays alive, is never OOM-killed, and its peak memory stays under the cap; and a
batch the request created reaches a terminal status within the deadline.
"""

from __future__ import annotations

import httpx
import pytest

from tests.hostile import cases
from tests.hostile.capped_server import CappedServer, report
from tests.hostile.routes import TEMPLATES, Route, answer_problems, body_routes, strict_json

pytestmark = pytest.mark.slow


def _params() -> list[pytest.ParameterSet]:
    return [
        pytest.param(route, name, id=f"{route.label} {name}")
        for route in body_routes()
        for name in cases.case_names(route)
    ]


def test_the_route_table_holds_every_body_route_of_the_app() -> None:
    """Enumeration is from the app: the routes this suite knows are all still there, and
    each route that reads a body has a template (add one to routes.TEMPLATES)."""
    found = {(r.method, r.path): r.kind for r in body_routes()}
    assert set(TEMPLATES) <= set(found), set(TEMPLATES) - set(found)
    missing = [
        f"{m} {p}" for (m, p), kind in found.items() if kind != "none" and (m, p) not in TEMPLATES
    ]
    assert not missing, f"routes that read a body but have no template: {missing}"
    assert found[("POST", "/v1/files")] == "multipart"
    assert found[("POST", "/v1/messages/batches")] == "json"
    assert found[("POST", "/ui/login")] == "form"
    assert found[("POST", "/v1/batches/{batch_id}/cancel")] == "none"


@pytest.mark.parametrize(("route", "name"), _params())
def test_route_survives_hostile_body(server: CappedServer, route: Route, name: str) -> None:
    document = cases.build(route, name, server.ids)
    if route.path.startswith("/ui/") and route.path != "/ui/login":
        server.sign_in_dashboard()  # else the page only redirects to the sign-in form
    headers = {} if document.content_type is None else {"content-type": document.content_type}
    try:
        response = server.client.request(
            route.method, route.url(server.ids), content=document.body, headers=headers
        )
    except httpx.TransportError as exc:
        problems = [f"no answer: {exc!r}"]
    else:
        problems = answer_problems(route, response, must_reject=document.must_reject)
        left_behind = _created_batch_problems(server, response)
        if response.status_code < 400 or response.status_code >= 500:
            left_behind += _listing_problems(server)  # what it stored must not break a page
        if left_behind:
            server.needs_restart = True  # the next case gets a server without it
        problems += left_behind
        if name == "multipart-two-file-parts" and route.path == "/v1/files":
            problems += _two_parts_problems(server, response)
    problems += server.problems()
    assert not problems, report(server, f"{route.label} with {name}", problems)


# Pages that show what the cases stored: the newest first, so a poisoned object is on them.
LISTINGS = (
    "/v1/files",
    "/v1/batches",
    "/v1/messages/batches",
    "/v1/webhook_endpoints",
    "/",
    "/ui/webhooks",
)


def _listing_problems(server: CappedServer) -> list[str]:
    problems = []
    for path in LISTINGS:
        try:
            answer = server.get(path)
        except httpx.TransportError as exc:
            problems.append(f"then GET {path} got no answer: {exc!r}")
            continue
        if answer.status_code >= 500:
            problems.append(f"then GET {path} answered {answer.status_code}: {answer.text[:200]}")
    return problems


def _created_batch_problems(server: CappedServer, response: httpx.Response) -> list[str]:
    """A batch the request created must reach a terminal status; its files must be JSON."""
    kind, batch_id = _created_batch(response)
    if batch_id is None:
        return []
    batch, problems = server.wait_batch_ended(kind, batch_id)
    if problems or batch is None:
        return problems
    if kind == "openai":
        downloads = [
            f"/v1/files/{batch[k]}/content"
            for k in ("output_file_id", "error_file_id")
            if batch.get(k)
        ]
    else:
        downloads = [f"/v1/messages/batches/{batch_id}/results"]
    for path in downloads:
        answer = server.get(path)
        if answer.status_code != 200:
            problems.append(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
            continue
        for number, line in enumerate(answer.text.splitlines(), 1):
            try:
                strict_json(line)
            except ValueError as exc:
                problems.append(f"{path} line {number} is not strict JSON ({exc}): {line[:200]}")
    return problems


def _created_batch(response: httpx.Response) -> tuple[str, str | None]:
    if response.status_code in (302, 303) and response.headers.get("location", "").startswith(
        "/ui/batches/"
    ):
        return "openai", response.headers["location"].rsplit("/", 1)[-1]
    if response.status_code != 200 or "json" not in response.headers.get("content-type", ""):
        return "", None
    try:
        body = response.json()
    except ValueError:
        return "", None
    if isinstance(body, dict) and body.get("object") == "batch":
        return "openai", str(body["id"])
    if isinstance(body, dict) and body.get("type") == "message_batch":
        return "anthropic", str(body["id"])
    return "", None


def _two_parts_problems(server: CappedServer, response: httpx.Response) -> list[str]:
    """Two `file` parts must not be stored as one file holding both."""
    if response.status_code != 200:
        return []
    content = server.get(f"/v1/files/{response.json()['id']}/content").content
    if content.count(b"\n") > 1:
        return [f"two file parts were stored concatenated as one file: {content[:200]!r}"]
    return []
