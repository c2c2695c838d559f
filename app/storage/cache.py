"""A bounded local cache of stored objects: what a worker (or the API, for predict) reads from
object storage is downloaded once and kept, least recently used first out past max_bytes.

An entry is root/<sha256 of the key>/<last part of the key> (a file or a directory); a download
lands in a staging directory and is renamed into place, so no reader ever sees half a copy.
Recency is the entry directory's mtime, so worker processes sharing a data dir share the cache;
eviction runs under a file lock."""
import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class BlobCache:
    def __init__(self, root: Path, max_bytes: int, staging: Callable[[], Path]):
        """staging() makes a new empty directory for a download (on the same file system)."""
        self.root, self.max_bytes, self.staging = root, max_bytes, staging
        self.root.mkdir(parents=True, exist_ok=True)

    def _entry(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:32]

    def get(self, key: str, download: Callable[[Path], None]) -> Path:
        """The cached copy of key; on a miss download(dest) fills dest first."""
        entry = self._entry(key)
        path = entry / key.rstrip("/").rsplit("/", 1)[-1]
        if path.exists():
            os.utime(entry)  # most recently used
            return path
        staging = self.staging()
        try:
            download(staging / path.name)
            with self._locked():
                if not path.exists():
                    entry.mkdir(exist_ok=True)
                    os.replace(staging / path.name, path)
                os.utime(entry)
                self._evict(keep=entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path

    def drop(self, key: str) -> None:
        with self._locked():
            shutil.rmtree(self._entry(key), ignore_errors=True)

    @contextmanager
    def _locked(self):
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _evict(self, keep: Path) -> None:
        """Remove least recently used entries until the rest fit max_bytes (never `keep`, the
        one just asked for, even when it alone is larger)."""
        entries = sorted((e.stat().st_mtime, e) for e in self.root.iterdir() if e.is_dir())
        sizes = {e: _bytes(e) for _, e in entries}
        total = sum(sizes.values())
        for _, entry in entries:
            if total <= self.max_bytes:
                break
            if entry != keep:
                shutil.rmtree(entry, ignore_errors=True)
                total -= sizes[entry]
                log.info("storage cache: evicted %s (%d bytes)", entry.name, sizes[entry])
