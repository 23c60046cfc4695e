"""Which blob store a Freight uses: a local directory, or S3 when `files_url` says s3://."""

from __future__ import annotations

from pathlib import Path

from freight.config import Settings
from freight.store import blob_store
from freight.store.blob_store import BlobStorage


def open_blob_storage(settings: Settings) -> BlobStorage:
    """The BlobStorage that `settings.files_url` names (a directory unless it is s3://)."""
    url = settings.files_url
    if url is not None and url.startswith("s3://"):
        from freight.store import s3  # boto3 is imported only when S3 is used

        return s3.S3BlobStore.from_url(url, settings.s3)
    if url is None:
        return blob_store.BlobStore(settings.files_dir)
    return blob_store.BlobStore(Path(url.removeprefix("file://")))
