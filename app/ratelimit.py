"""Per-key rate limits on the expensive routes: a token bucket per (tenant key, route class).

In-process: each API process keeps its own buckets, so N API processes allow N times the rate.
"""
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Depends

from app.keys.auth import CurrentCaller
from app.config import get_settings
from app.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, who: str, what: str, per_minute: int) -> None:
        """Spend one token or raise 429 with the seconds until the next one (Retry-After)."""
        if per_minute <= 0:
            return
        rate, now = per_minute / 60.0, time.monotonic()
        with self._lock:
            b = self._buckets.setdefault((who, what), _Bucket(float(per_minute), now))
            b.tokens = min(float(per_minute), b.tokens + (now - b.updated) * rate)
            b.updated = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return
            wait = math.ceil((1.0 - b.tokens) / rate)
        raise RateLimited(f"Too many {what} requests: at most {per_minute} a minute per key. "
                          f"Retry in {wait}s.", headers={"Retry-After": str(wait)})

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


limiter = RateLimiter()


def rate_limit(what: str, setting: str):
    """A route dependency spending one of the caller's tokens for `what`."""
    async def _take(caller: CurrentCaller) -> None:  # in memory: no thread-pool hop
        limiter.take(caller.key_id or caller.tenant, what, getattr(get_settings(), setting))

    return Depends(_take)
