"""Request-scoped access to the running service."""

from __future__ import annotations

from fastapi import Header, Request

from freight.service import Service
from freight.store.files import DEFAULT_PROJECT


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def project(request: Request) -> str:
    """The caller's project (single-user until API keys are configured)."""
    return DEFAULT_PROJECT


def anthropic_headers(
    x_api_key: str | None = Header(None, description="Accepted; keys are not checked yet."),
    anthropic_version: str | None = Header(None, description="Accepted, e.g. 2023-06-01."),
    anthropic_beta: str | None = Header(None, description="Accepted and ignored."),
) -> None:
    """The headers Anthropic's SDK sends on every call: accepted (and documented) here.

    There is one API shape per path, whatever `anthropic-version` says, and no key check
    until API keys are configured.
    """
