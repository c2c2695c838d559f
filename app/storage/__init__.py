"""Blob storage behind one small interface: a local directory (the default), or any
S3-compatible object store when ADAPT_STORAGE_URL=s3://bucket/prefix. Keys look like relative
paths ("datasets/<tenant>/<id>/data.csv"); a key names a file or, for put_dir, a directory."""
from pathlib import Path
from typing import BinaryIO, Protocol

from app.config import get_settings
from app.storage.local import LocalStorage


class Storage(Protocol):
    remote: bool  # True when the blobs are not files of this machine (object storage)

    def fetch(self, key: str) -> Path: ...  # a local file/directory holding the key, to read
    def put_file(self, key: str, src: Path) -> int: ...  # src is consumed
    def put_dir(self, key: str, src: Path) -> int: ...   # src is consumed
    def open(self, key: str) -> BinaryIO: ...  # a streaming read
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def size(self, key: str) -> int: ...
    def staging_dir(self) -> Path: ...
    def ping(self) -> None: ...
    # Object storage (remote) also has list(key), download(key, dest), upload_tree(key, src)
    # and iter_bytes(key): what resume checkpoints and streamed downloads use there.


_cache: dict[tuple[str, Path], Storage] = {}


def get_storage() -> Storage:
    """The storage the settings name (one instance per URL and data dir)."""
    settings = get_settings()
    key = (settings.storage_url, settings.data_dir.resolve())
    if key not in _cache:
        _cache[key] = _create(*key)
    return _cache[key]


def _create(url: str, data_dir: Path) -> Storage:
    if not url:
        return LocalStorage(data_dir / "blobs")
    from app.storage.s3 import S3Storage  # deferred: boto3 is imported only when S3 is used

    return S3Storage.from_settings(get_settings())


__all__ = ["LocalStorage", "Storage", "get_storage"]
