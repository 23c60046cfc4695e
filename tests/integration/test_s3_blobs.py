"""The S3 blob store against an S3-compatible server (moto, server mode, loopback port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from freight.config import S3Settings
from freight.errors import ConfigError, StorageUnavailable
from freight.protocol.batch_input import iter_lines
from freight.store.s3 import S3BlobStore
from tests.s3 import new_bucket, s3_server


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Settings]:
    with s3_server(monkeypatch) as settings:
        yield settings


@pytest.fixture
def store(s3: S3Settings) -> S3BlobStore:
    return S3BlobStore.from_url(f"s3://{new_bucket(s3)}/some/prefix", s3)


def test_a_blob_round_trips_and_is_read_line_by_line(store: S3BlobStore) -> None:
    lines = [b'{"n": %d}' % i for i in range(2000)]
    with store.create("input.jsonl") as fh:
        for line in lines:
            fh.write(line + b"\n")
    assert store.exists("input.jsonl")
    assert store.size("input.jsonl") == sum(len(x) + 1 for x in lines)
    assert store.local_path("input.jsonl") is None
    with store.open("input.jsonl") as fh:
        assert [raw for _, raw in iter_lines(fh, 1024)] == lines
    head = store.client.head_object(Bucket=store.bucket, Key="some/prefix/input.jsonl")
    assert head["ContentLength"] == store.size("input.jsonl")


def test_a_large_blob_goes_up_in_parts_and_comes_back_whole(store: S3BlobStore) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with store.create("big") as fh:
        for _ in range(20):  # past the spool and the multipart threshold
            fh.write(chunk)
    with store.open("big") as fh:
        assert fh.read() == chunk * 20


def test_a_failed_write_leaves_no_object(store: S3BlobStore) -> None:
    with pytest.raises(RuntimeError), store.create("half") as fh:
        fh.write(b"partial")
        raise RuntimeError("the upload was interrupted")
    assert not store.exists("half")


def test_missing_blobs_are_file_not_found_and_delete_is_idempotent(store: S3BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.open("nothing")
    with pytest.raises(FileNotFoundError):
        store.size("nothing")
    store.delete("nothing")
    with store.create("x") as fh:
        fh.write(b"1")
    store.delete("x")
    assert not store.exists("x")


def test_a_missing_bucket_is_storage_unavailable_naming_the_object(s3: S3Settings) -> None:
    store = S3BlobStore.from_url("s3://no-such-bucket/p", s3)
    missing = pytest.raises(StorageUnavailable, match="s3://no-such-bucket/p/x")
    with missing, store.create("x") as fh:
        fh.write(b"1")


def test_an_unreachable_endpoint_is_storage_unavailable() -> None:
    settings = S3Settings(endpoint_url="http://127.0.0.1:9", addressing_style="path")
    store = S3BlobStore.from_url("s3://bucket/p", settings)
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(StorageUnavailable, match="s3://bucket/p/x"):
        store.exists("x")


def test_a_files_url_without_a_bucket_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="s3://bucket"):
        S3BlobStore.from_url("s3:///prefix", S3Settings())
