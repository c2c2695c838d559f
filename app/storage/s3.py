"""Blobs in any S3-compatible object store (AWS S3, MinIO, Ceph, R2, …) through boto3.

Uploads go from a local staging file (or directory) to S3 with boto3's transfer manager:
multipart past s3_multipart_chunk_bytes, one part per request, a few parts in flight, so memory
stays bounded whatever the file size; the staging copy is removed once stored. Reads either
stream the object body (open) or go through a bounded local cache (fetch) for code that needs a
file on disk (dataset parsing, model loading). A key naming a directory (put_dir) is the set of
objects under "<key>/"."""
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app import janitor
from app.config import Settings
from app.storage.cache import BlobCache

log = logging.getLogger(__name__)
MISSING = {"404", "NoSuchKey", "NotFound"}
PING_TIMEOUT_S = 2.0  # /readyz must answer fast when the endpoint is down


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in MISSING


class S3Storage:
    remote = True

    def __init__(self, url: str, data_dir: Path, *, endpoint_url: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = "",
                 chunk_bytes: int = 8 << 20, cache_bytes: int = 10 << 30):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        self.url, self.bucket, self.prefix = url, parsed.netloc, parsed.path.strip("/")
        self.data_dir = data_dir
        session = boto3.session.Session(aws_access_key_id=access_key_id or None,
                                        aws_secret_access_key=secret_access_key or None,
                                        region_name=region or None)
        # MinIO, moto, Ceph… are addressed by path (bucket.host names rarely resolve there).
        style = {"s3": {"addressing_style": "path"}} if endpoint_url else {}
        self.client = session.client("s3", endpoint_url=endpoint_url or None, config=Config(
            connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5},
            **style))
        self._ping_client = session.client("s3", endpoint_url=endpoint_url or None, config=Config(
            connect_timeout=PING_TIMEOUT_S, read_timeout=PING_TIMEOUT_S,
            retries={"total_max_attempts": 1}, **style))
        self.transfer = TransferConfig(multipart_threshold=chunk_bytes,
                                       multipart_chunksize=chunk_bytes, max_concurrency=4)
        self.cache = BlobCache(data_dir / "cache" / "blobs", cache_bytes, self.staging_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Storage":
        return cls(settings.storage_url, settings.data_dir.resolve(),
                   endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                   access_key_id=settings.s3_access_key_id,
                   secret_access_key=settings.s3_secret_access_key,
                   chunk_bytes=settings.s3_multipart_chunk_bytes,
                   cache_bytes=settings.storage_cache_bytes)

    def _full(self, key: str) -> str:
        parts = key.strip("/").split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid storage key: {key!r}")
        return "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)

    def staging_dir(self) -> Path:
        """A local directory named for this process (app.janitor removes it if the process
        dies): uploads are staged, and downloads land, there."""
        return janitor.owned_dir(self.data_dir / "blobs" / "tmp")

    # -- writes ------------------------------------------------------------------------------
    def put_file(self, key: str, src: Path) -> int:
        size = src.stat().st_size
        self.client.upload_file(str(src), self.bucket, self._full(key), Config=self.transfer)
        src.unlink()
        self.cache.drop(key)
        return size

    def put_dir(self, key: str, src: Path) -> int:
        size = self.upload_tree(key, src)
        shutil.rmtree(src, ignore_errors=True)
        self.cache.drop(key)  # a re-run of the same step: the new copy wins
        return size

    def upload_tree(self, key: str, src: Path, last: str | None = None) -> int:
        """Copy src's files under "<key>/" (src stays), the file named `last` after all others
        (its presence then marks the tree complete); objects no longer in src are removed."""
        files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name == last, p))
        names = {p.relative_to(src).as_posix() for p in files}
        for path in files:
            self.client.upload_file(str(path), self.bucket,
                                    self._full(f"{key}/{path.relative_to(src).as_posix()}"),
                                    Config=self.transfer)
        self._delete_many([f"{key}/{n}" for n in self.list(key) if n not in names])
        return sum(p.stat().st_size for p in files)

    def delete(self, key: str) -> None:
        """The object, or every object under "<key>/" (a directory)."""
        self._delete_many([key, *(f"{key}/{n}" for n in self.list(key))])
        self.cache.drop(key)

    def _delete_many(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):  # S3's limit per DeleteObjects request
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self._full(k)} for k in keys[i:i + 1000]], "Quiet": True})

    # -- reads -------------------------------------------------------------------------------
    def list(self, key: str) -> list[str]:
        """The names of the objects under "<key>/", relative to it."""
        base = self._full(key) + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                     Prefix=base)
        return [o["Key"][len(base):] for page in pages for o in page.get("Contents", [])]

    def open(self, key: str) -> BinaryIO:
        """The object's body, streamed from S3 as it is read."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from None
            raise

    def iter_bytes(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        body = self.open(key)
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def exists(self, key: str) -> bool:
        if self._head(key) is not None:
            return True
        found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._full(key) + "/",
                                            MaxKeys=1)
        return found.get("KeyCount", 0) > 0

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(key)
        return head["ContentLength"]

    def fetch(self, key: str) -> Path:
        """A local copy of the file or directory, from the bounded cache (downloaded on a miss)."""
        return self.cache.get(key, lambda dest: self.download(key, dest))

    def download(self, key: str, dest: Path) -> None:
        """Copy the object, or the directory's objects, to dest (FileNotFoundError: neither)."""
        if self._head(key) is not None:
            self.client.download_file(self.bucket, self._full(key), str(dest),
                                      Config=self.transfer)
            return
        names = self.list(key)
        if not names:
            raise FileNotFoundError(key)
        for name in names:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, self._full(f"{key}/{name}"),
                                      str(dest / name), Config=self.transfer)

    def ping(self) -> None:
        """Raise unless the bucket answers, within PING_TIMEOUT_S and with no retry."""
        try:
            self._ping_client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise ConnectionError(f"{self.url} ({self.client.meta.endpoint_url}): {exc}") from exc
