"""Request-scoped access to the running service and the caller's identity."""

from __future__ import annotations

from fastapi import Header, Request

from freight.service.access import Identity
from freight.service.runtime import Service


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def presented_key(request: Request) -> str | None:
    """The API key the caller sent: `Authorization: Bearer KEY` or `x-api-key: KEY`."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def resolve_project(svc: Service, key: str | None) -> str:
    """The project a key belongs to. Every entry point (API routes, dashboard) uses this.

    Single-user (the default project) until an API key is created; then a missing,
    unknown, revoked or expired key raises Unauthorized.
    """
    return svc.keys.identify(key).project


def identity(request: Request) -> Identity:
    """The caller, from the key in the request headers (checked once per request: the
    /v1 gate in api/authentication.py has usually done it already)."""
    known: Identity | None = getattr(request.state, "identity", None)
    if known is None:
        known = service(request).keys.identify(presented_key(request))
        request.state.identity = known
    return known


def project(request: Request) -> str:
    """FastAPI dependency: the caller's project, from the key in the request headers.

    What the caller creates belongs to this project.
    """
    return identity(request).project


def scope(request: Request) -> str | None:
    """FastAPI dependency: whose objects the caller may read, cancel and delete: its own
    project's, or every project's (None) for an admin key. Others' ids answer 404."""
    return identity(request).scope


def anthropic_headers(
    x_api_key: str | None = Header(None, description="The API key (see presented_key)."),
    anthropic_version: str | None = Header(None, description="Accepted, e.g. 2023-06-01."),
    anthropic_beta: str | None = Header(None, description="Accepted and ignored."),
) -> None:
    """The headers Anthropic's SDK sends on every call: accepted (and documented) here.

    There is one API shape per path, whatever `anthropic-version` says; `x-api-key`
    identifies the caller like a bearer token does (`project`).
    """
