"""API keys and the caller they identify: creating keys, checking them, their projects.

A key is `frk_` + 43 URL-safe characters (256 random bits), shown once when created. The
store keeps only HMAC-SHA256(server secret, key): a copy of the database alone cannot be
used to sign in, nor (the keys being random) to recover a key. The server secret is
`[security] key_secret`, else a random one created once in FREIGHT_HOME (`secret.key`,
mode 0600); nodes sharing one database must share it.

While no key has ever been created, Freight is single-user: every caller is the default
project. Once one exists, every /v1 call needs a valid key (api/authentication.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from freight import ids
from freight.config import Settings
from freight.errors import InvalidRequest, Unauthorized
from freight.store import api_keys
from freight.store.db import Database
from freight.store.files import DEFAULT_PROJECT

KEY_PREFIX = "frk_"
SHOWN_PREFIX_CHARS = 12  # `frk_` + 8: enough to tell keys apart in `freight keys list`
SECRET_FILE = "secret.key"
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{8,}")


@dataclass(frozen=True)
class Identity:
    """Who is calling: their project, and whether their key may see every project."""

    project: str
    is_admin: bool = False

    @property
    def scope(self) -> str | None:
        """The project filter for reads: None (every project) for an admin key."""
        return None if self.is_admin else self.project


SINGLE_USER = Identity(DEFAULT_PROJECT)


def read_or_create_secret(path: Path) -> str:
    """A random secret kept in `path` (mode 0600), created on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:  # O_EXCL: of two processes starting at once, one writes and both read its secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def check_project_name(name: str) -> str:
    if not PROJECT_NAME.fullmatch(name):
        raise InvalidRequest(
            f"Invalid project name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            param="project",
        )
    return name


def redact(text: str) -> str:
    """`text` with anything shaped like a key replaced by its shown prefix and `...`."""
    return KEY_PATTERN.sub(lambda m: m.group(0)[:SHOWN_PREFIX_CHARS] + "...", text)


class RedactKeys(logging.Filter):
    """A log handler filter that replaces anything shaped like a key (`redact`), wherever
    it got in: a key pasted into a URL's query string reaches the access log otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_logs(logger_names: tuple[str, ...] = ("", "uvicorn", "uvicorn.access")) -> None:
    """Install RedactKeys on every handler of these loggers (after logging is configured)."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactKeys) for f in handler.filters):
                handler.addFilter(RedactKeys())


class KeyRing:
    """Creates and checks API keys against the store."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._secret: bytes | None = None

    def _hash(self, key: str) -> str:
        if self._secret is None:
            configured = self.settings.security.key_secret
            secret = configured or read_or_create_secret(self.settings.home / SECRET_FILE)
            self._secret = secret.encode()
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def create(
        self,
        project: str,
        *,
        is_admin: bool = False,
        expires_in_days: float | None = None,
        now: float | None = None,
    ) -> tuple[api_keys.KeyRecord, str]:
        """A new key for `project`: its record, and the key itself (shown once, never stored).

        `now`: when it counts as created (default: the wall clock), as in the store.
        """
        check_project_name(project)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = int(time.time() if now is None else now)
        record = api_keys.KeyRecord(
            id=ids.new_id("key_"),
            prefix=key[:SHOWN_PREFIX_CHARS],
            hash=self._hash(key),
            project=project,
            is_admin=is_admin,
            created_at=now,
            expires_at=None if expires_in_days is None else now + int(expires_in_days * 86400),
            revoked_at=None,
        )
        with self.db.write() as conn:
            api_keys.insert(conn, record)
        return record, key

    def is_enabled(self) -> bool:
        """Whether keys are required (any key was ever created)."""
        with self.db.read() as conn:
            return api_keys.any_exist(conn)

    def identify(self, key: str | None) -> Identity:
        """The caller that `key` identifies. Raises Unauthorized for a missing, unknown,
        revoked or expired key once keys are enabled. Never puts the key in a message."""
        with self.db.read() as conn:
            if not api_keys.any_exist(conn):
                return SINGLE_USER
            record = api_keys.find_by_hash(conn, self._hash(key)) if key else None
        if record is None and not key:
            raise Unauthorized(
                "Missing API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'."
            )
        if record is None:
            raise Unauthorized("Invalid API key.", code="invalid_api_key")
        if record.revoked_at is not None:
            raise Unauthorized(
                f"The API key {record.prefix}... has been revoked.", code="invalid_api_key"
            )
        if record.is_expired(time.time()):
            raise Unauthorized(
                f"The API key {record.prefix}... has expired.", code="invalid_api_key"
            )
        return Identity(record.project, record.is_admin)
