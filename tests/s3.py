"""An S3-compatible server (moto in server mode) on a loopback port, for the S3 blob store."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from freight.config import S3Settings
from tests.conftest import free_port


@contextlib.contextmanager
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Settings]:
    """Start the server, make a bucket, yield settings that reach it; stop it after."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # boto3 reads credentials and region from the usual environment variables.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "freight-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "freight-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield S3Settings(endpoint_url=f"http://127.0.0.1:{port}", addressing_style="path")
    finally:
        server.stop()


def new_bucket(settings: S3Settings) -> str:
    name = f"freight-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=settings.endpoint_url)
    client.create_bucket(Bucket=name)
    return name
