"""Which BlobStorage `files_url` picks: local disk by default, a shared directory, or S3."""

from __future__ import annotations

from pathlib import Path

from freight.store import blob_backends, blob_store
from freight.store.s3 import S3BlobStore
from tests.conftest import make_settings


def test_files_default_to_a_folder_in_home(tmp_path: Path) -> None:
    store = blob_backends.open_blob_storage(make_settings(tmp_path / "home"))
    assert isinstance(store, blob_store.BlobStore)
    assert store.root == tmp_path / "home" / "files"


def test_a_shared_directory_is_given_as_a_path_or_a_file_url(tmp_path: Path) -> None:
    for url in (str(tmp_path / "shared"), f"file://{tmp_path / 'shared'}"):
        store = blob_backends.open_blob_storage(make_settings(tmp_path / "home", files_url=url))
        assert isinstance(store, blob_store.BlobStore) and store.root == tmp_path / "shared"
        with store.create("a") as fh:
            fh.write(b"x")
        assert store.local_path("a") == tmp_path / "shared" / "a"


def test_an_s3_url_names_the_bucket_and_prefix(tmp_path: Path) -> None:
    store = blob_backends.open_blob_storage(
        make_settings(tmp_path / "home", files_url="s3://my-bucket/freight/files/")
    )
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.key("file-1")) == ("my-bucket", "freight/files/file-1")
