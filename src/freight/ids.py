"""Unguessable object ids in the prefixes the wire APIs use."""

from __future__ import annotations

import os
import string

_ALPHABET = string.digits + string.ascii_letters
_NUM_CHARS = 24  # 62**24 is about 2**143


def new_id(prefix: str) -> str:
    """Return `prefix` followed by 24 random base62 characters from the OS's CSPRNG."""
    n = int.from_bytes(os.urandom(18), "big")
    chars = []
    for _ in range(_NUM_CHARS):
        n, digit = divmod(n, 62)
        chars.append(_ALPHABET[digit])
    return prefix + "".join(chars)
