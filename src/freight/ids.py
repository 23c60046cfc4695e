"""Unguessable object ids in the prefixes the wire APIs use."""

from __future__ import annotations

import base64
import os


def new_id(prefix: str) -> str:
    """`prefix` + 32 random base32 characters (160 bits from the OS's CSPRNG)."""
    return prefix + base64.b32encode(os.urandom(20)).decode("ascii").lower()


def new_request_id() -> str:
    """`batch_req_` + 32 hex characters (128 random bits): cheap enough for millions of lines."""
    return "batch_req_" + os.urandom(16).hex()
