"""The S3-compatible BlobStorage: file bodies as objects under `s3://bucket/prefix/`.

An object appears only when its upload completes (S3 has no partial objects), which
gives the same all-or-nothing writes as the local store's rename. A blob is written to
a spooled temporary file first (memory up to SPOOL_BYTES, then disk) and uploaded when
the writer finishes, multipart for large ones; reads stream the object's body.
Driver faults (unreachable endpoint, throttling, denied access) leave as
StorageUnavailable naming the bucket and the cause.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions

from freight.config import S3Settings
from freight.errors import ConfigError, StorageUnavailable
from freight.store.blob_store import BlobInfo

SPOOL_BYTES = 8 * 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3BlobStore:
    """Blobs as objects in one bucket, under a key prefix."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    @classmethod
    def from_url(cls, url: str, settings: S3Settings) -> S3BlobStore:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"files_url {url!r}: expected s3://bucket or s3://bucket/prefix")
        config = botocore.config.Config(
            s3={"addressing_style": settings.addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
        )
        return cls(parsed.netloc, parsed.path, client)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            yield spool  # type: ignore[misc]
            spool.seek(0)
            with self._errors(name, "write"):
                self.client.upload_fileobj(spool, self.bucket, self.key(name))

    def open(self, name: str) -> BinaryIO:
        with self._errors(name, "read"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
            except botocore.exceptions.ClientError as exc:
                if _is_not_found(exc):
                    raise FileNotFoundError(f"s3://{self.bucket}/{self.key(name)}") from exc
                raise
        # Buffered, so line-by-line readers (batch_input.iter_lines) read in large chunks.
        return io.BufferedReader(_StreamingRaw(body), buffer_size=1024 * 1024)  # type: ignore[return-value]

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def size(self, name: str) -> int:
        head = self._head(name)
        if head is None:
            raise FileNotFoundError(f"s3://{self.bucket}/{self.key(name)}")
        return int(head["ContentLength"])

    def delete(self, name: str) -> None:
        with self._errors(name, "delete"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def local_path(self, name: str) -> Path | None:
        return None

    def list(self, after: str | None, limit: int) -> list[BlobInfo]:
        """Objects under the prefix, in key order (S3 lists keys in UTF-8 byte order).

        An interrupted multipart upload leaves parts, not an object; a bucket lifecycle
        rule (AbortIncompleteMultipartUpload) removes those.
        """
        start = self.key("") if self.prefix else ""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": start, "MaxKeys": limit}
        if after is not None:
            kwargs["StartAfter"] = self.key(after)
        with self._errors(after or "", "list"):
            page = self.client.list_objects_v2(**kwargs)
        return [
            BlobInfo(item["Key"][len(start) :], item["LastModified"].timestamp())
            for item in page.get("Contents", [])
        ]

    def _head(self, name: str) -> dict[str, Any] | None:
        with self._errors(name, "look up"):
            try:
                return dict(self.client.head_object(Bucket=self.bucket, Key=self.key(name)))
            except botocore.exceptions.ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise

    @contextmanager
    def _errors(self, name: str, action: str) -> Iterator[None]:
        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise StorageUnavailable(
                f"Could not {action} s3://{self.bucket}/{self.key(name)}: {exc}"
            ) from exc


def _is_not_found(exc: botocore.exceptions.ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND


class _StreamingRaw(io.RawIOBase):
    """A botocore StreamingBody as a raw stream, for io.BufferedReader."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()
