"""Request-scoped access to the running service."""

from __future__ import annotations

from fastapi import Request

from freight.service import Service
from freight.store.files import DEFAULT_PROJECT


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def project(request: Request) -> str:
    """The caller's project (single-user until API keys are configured)."""
    return DEFAULT_PROJECT
