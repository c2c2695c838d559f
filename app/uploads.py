"""Uploads streamed to a staging file while hashing (shared by datasets and base models)."""
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from app.errors import TooLarge
from app.storage import Storage

CHUNK = 1 << 20


class ChunkObserver(Protocol):
    """Sees every chunk as it streams past (e.g. byte statistics for the fast CSV path)."""

    def update(self, chunk: bytes) -> None: ...
    def finish(self) -> None: ...


@dataclass
class StagedUpload:
    """An upload streamed to a staging directory: its size and sha256 are known."""

    path: Path
    size: int
    sha256: str
    stats: Any = None  # the observer that watched it stream, if any

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def _stream_to(src: BinaryIO, dest: Path, limit: int,
               observer: ChunkObserver | None) -> tuple[int, str]:
    """Copy src to dest in 1 MiB chunks, hashing; 413 the moment the limit is crossed."""
    digest, size = hashlib.sha256(), 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"The file is larger than the limit of {limit} bytes.",
                               code="file_too_large", param="file")
            digest.update(chunk)
            if observer is not None:
                observer.update(chunk)
            out.write(chunk)
    if observer is not None:
        observer.finish()
    return size, digest.hexdigest()


def stage(storage: Storage, limit: int, upload: BinaryIO,
          observer: ChunkObserver | None = None) -> StagedUpload:
    """Stream the upload to a staging file while hashing (413 past `limit` bytes); nothing stays
    behind when it fails."""
    staging = storage.staging_dir()
    try:
        size, sha = _stream_to(upload, staging / "upload", limit, observer)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StagedUpload(staging / "upload", size, sha, observer)
