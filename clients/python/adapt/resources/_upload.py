"""Uploads stream from a path or an open file: httpx reads the file in chunks as it sends. A path
(or bytes) is sent again from the start on a retry; an open file is sent once."""
from __future__ import annotations

from typing import Any, Callable

from adapt._http import Uploadable

__all__ = ["Uploadable", "form", "data_of"]


def form(**fields: object) -> dict[str, str]:
    """Multipart text fields, leaving out the ones not given."""
    return {k: str(v) for k, v in fields.items() if v is not None}


def data_of(parse: Callable[[Any], Any]) -> Callable[[dict], list]:
    """A list body's `data`, each item parsed."""
    return lambda body: [parse(item) for item in body["data"]]
