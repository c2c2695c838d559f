"""Checkpoint directories packed as ZIP files for download."""
import io
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path


def zip_directory(src: Path, staging: Path) -> Path:
    """A ZIP of src's files (stored, not deflated: safetensors barely compress)."""
    out = staging / f"{src.name}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    return _cleanup_parent(out)


def _cleanup_parent(path: Path) -> Path:
    # The staging dir holds only this file; move the file up so one unlink removes everything.
    dest = path.parent.parent / f"{path.parent.name}-{path.name}"
    shutil.move(path, dest)
    path.parent.rmdir()
    return dest


class _Chunks(io.RawIOBase):
    """A write-only, unseekable sink that hands what was written to the response in pieces."""

    def __init__(self):
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def zip_stream(storage, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A ZIP of the objects under "<key>/" in object storage, built as it is sent: each object
    is streamed from the store into the archive (stored, sizes in data descriptors), so neither
    memory nor the API's disk ever holds the checkpoint."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(storage.list(key)):
            info = zipfile.ZipInfo(name, time.localtime()[:6])
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as dest:
                for data in storage.iter_bytes(f"{key}/{name}", chunk):
                    dest.write(data)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
