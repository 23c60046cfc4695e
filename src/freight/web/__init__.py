"""The web dashboard: server-rendered pages at / and /ui/..., signed in with an API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from freight.config import Settings
from freight.web import headers, pages, session, webhook_pages

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, settings: Settings) -> None:
    """Add the dashboard's routes, static files and session cookie to `app`."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=session.secret(settings),
        session_cookie="freight_session",
        same_site="lax",
        https_only=settings.web.https_only_cookies,
        max_age=14 * 24 * 3600,
    )
    app.add_middleware(headers.SecurityHeaders)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(pages.router)
    app.include_router(webhook_pages.router)

    @app.exception_handler(session.LoginRequired)
    async def on_login_required(request: Request, exc: session.LoginRequired) -> Response:
        if request.url.path == "/ui/progress":
            return Response(status_code=401)
        return RedirectResponse("/ui/login", status_code=303)
