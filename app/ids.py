"""Opaque, prefixed, sortable ids (ds_…, job_…): time-ordered so that newest-first lists are cheap."""
import os
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """prefix_ + 10 chars of milliseconds + 10 random chars; lexical order is creation order."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(8), "big")
    return f"{prefix}_{_base36(ms, 10)}{_base36(rand, 10)}"
