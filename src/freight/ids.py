"""Unguessable object ids in the prefixes the wire APIs use."""

from __future__ import annotations

import base64
import os


def new_id(prefix: str) -> str:
    """`prefix` + 24 random base32 characters (120 bits from the OS's CSPRNG)."""
    return prefix + base64.b32encode(os.urandom(15)).decode("ascii").lower()


def new_request_id() -> str:
    """`batch_req_` + 24 hex characters (96 random bits): cheap enough for millions of lines."""
    return "batch_req_" + os.urandom(12).hex()
