"""Blobs as files under a local directory: the embedded default."""
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from app import janitor


class LocalStorage:
    """Keys are relative paths under root. Writes land in a staging dir, then move atomically."""

    remote = False

    def __init__(self, root: Path):
        self.root = root.resolve()
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def staging_dir(self) -> Path:
        """A new directory in <root>/tmp named for this process: app.janitor removes it when
        the process died before it was moved or cleaned up."""
        return janitor.owned_dir(self.root / "tmp")

    def put_file(self, key: str, src: Path) -> int:
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.replace(src, dest)
        return dest.stat().st_size

    def put_dir(self, key: str, src: Path) -> int:
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():  # a re-run of the same step: the new copy wins
            shutil.rmtree(dest)
        os.replace(src, dest)
        return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())

    def fetch(self, key: str) -> Path:
        """The stored file or directory itself (nothing is copied)."""
        return self.local_path(key)

    def open(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def size(self, key: str) -> int:
        return self.local_path(key).stat().st_size

    def delete(self, key: str) -> None:
        path = self.local_path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def ping(self) -> None:
        """Raise unless a file can be written here (a unique name: probes may run at once)."""
        with tempfile.NamedTemporaryFile(dir=self.root / "tmp", prefix=".ping-") as probe:
            probe.write(b"ok")
            probe.flush()
