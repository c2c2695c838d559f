"""Uploads stream from a path or an open file: httpx reads the file in chunks as it sends."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Union

Uploadable = Union[str, Path, BinaryIO, bytes]


@contextmanager
def upload_file(file: Uploadable, filename: str | None) -> Iterator[tuple[str, BinaryIO | bytes]]:
    """(filename, body) for a multipart `file` field; a path is opened and closed here."""
    if isinstance(file, (str, Path)):
        path = Path(file)
        with path.open("rb") as f:
            yield filename or path.name, f
    elif isinstance(file, bytes):
        yield filename or "upload", file
    else:
        yield filename or Path(getattr(file, "name", "upload")).name, file


def form(**fields: object) -> dict[str, str]:
    """Multipart text fields, leaving out the ones not given."""
    return {k: str(v) for k, v in fields.items() if v is not None}
