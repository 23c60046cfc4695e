"""Dashboard sign-in: the API key lives in a signed session cookie, the project comes from it.

The key a person types is checked with `deps.resolve_project`, exactly as an API call's
key is, and checked again on every page (a revoked key signs the browser out). The
cookie is signed (itsdangerous), not encrypted: it holds the user's own key, in the
user's own browser, and cannot be forged or altered. It is `SameSite=Lax`, so other
sites cannot post forms with it.

The signing secret is `[web] session_secret`, or a random one created once in
FREIGHT_HOME (`session_secret`, mode 0600) so sessions survive restarts.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from freight.api.deps import resolve_project, service
from freight.config import Settings
from freight.errors import FreightError
from freight.service import access

SESSION_KEY = "api_key"
SECRET_FILE = "session_secret"


class LoginRequired(Exception):
    """The page needs a signed-in browser; the dashboard answers with the login form."""


def secret(settings: Settings) -> str:
    """The configured secret, else the one kept in FREIGHT_HOME (created on first use)."""
    if settings.web.session_secret:
        return settings.web.session_secret
    return access.read_or_create_secret(Path(settings.home) / SECRET_FILE)


def sign_in(request: Request, api_key: str) -> str:
    """Check the key and remember it in the session; returns the project. Raises FreightError."""
    project = resolve_project(service(request), api_key or None)
    request.session[SESSION_KEY] = api_key
    return project


def sign_out(request: Request) -> None:
    request.session.clear()


def identity(request: Request) -> access.Identity:
    """The signed-in browser's identity (its key checked again), else LoginRequired."""
    if SESSION_KEY not in request.session:
        raise LoginRequired()
    try:
        return service(request).keys.identify(request.session[SESSION_KEY] or None)
    except FreightError:
        request.session.clear()
        raise LoginRequired() from None


def project(request: Request) -> str:
    """FastAPI dependency for pages: the signed-in browser's project, else LoginRequired."""
    return identity(request).project


def scope(request: Request) -> str | None:
    """FastAPI dependency for pages: whose batches and files the browser may see (None:
    every project's, for an admin key), else LoginRequired."""
    return identity(request).scope
