"""Per-key rate limits on the expensive routes: a token bucket per (tenant key, route class),
holding a minute's worth of requests and refilled continuously.

Off in single-user mode (ADAPT_RATE_LIMITS=auto and auth off: one user has nobody to share with).
With a Redis broker the buckets live in Redis (one Lua script call a request, timed by Redis's
clock), so a key gets one limit however many API processes and machines serve it; otherwise each
API process keeps its own buckets (N processes allow N times the rate). When Redis can't be
reached the process falls back to its own buckets rather than refuse or fail requests.
"""
import logging
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Depends
from redis import RedisError

from app.config import get_settings
from app.errors import RateLimited
from app.keys.auth import CurrentCaller
from app.shared_state import redis_client

log = logging.getLogger(__name__)


@dataclass
class _Bucket:
    tokens: float
    updated: float


def _refused(what: str, per_minute: int, wait: int) -> RateLimited:
    return RateLimited(f"Too many {what} requests: at most {per_minute} a minute per key. "
                       f"Retry in {wait}s.", headers={"Retry-After": str(wait)})


class RateLimiter:
    """This process's buckets."""

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
        raise _refused(what, per_minute, wait)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


# KEYS[1]: the bucket; ARGV: capacity, tokens a second. Returns 0 (taken) or the ms to wait.
_TAKE = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or capacity
tokens = math.min(capacity, tokens + math.max(0, now - (tonumber(b[2]) or now)) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return wait
"""


class RedisRateLimiter:
    """Buckets in Redis shared by every process that uses the same client and prefix."""

    def __init__(self, client, prefix: str = "adapt:ratelimit:") -> None:
        self.client, self.prefix = client, prefix
        self._take = client.register_script(_TAKE)

    def take(self, who: str, what: str, per_minute: int) -> None:
        if per_minute <= 0:
            return
        wait_ms = int(self._take(keys=[f"{self.prefix}{what}:{who}"],
                                 args=[per_minute, per_minute / 60.0]))
        if wait_ms:
            raise _refused(what, per_minute, max(1, math.ceil(wait_ms / 1000)))

    def reset(self) -> None:
        for key in self.client.scan_iter(match=f"{self.prefix}*"):
            self.client.delete(key)


class Limits:
    """The limiter this process uses: Redis's buckets with a Redis broker, else its own."""

    def __init__(self) -> None:
        self.local = RateLimiter()
        self._shared: RedisRateLimiter | None = None

    def shared(self) -> RedisRateLimiter | None:
        if self._shared is None and (client := redis_client()) is not None:
            self._shared = RedisRateLimiter(client)
        return self._shared

    def take(self, who: str, what: str, per_minute: int) -> None:
        shared = self.shared()
        if shared is not None:
            try:
                return shared.take(who, what, per_minute)
            except RedisError as exc:
                log.warning("rate limits: Redis unreachable (%s); this process counts alone", exc)
        self.local.take(who, what, per_minute)

    def reset(self) -> None:
        self.local.reset()
        if (shared := self.shared()) is not None:
            shared.reset()


limiter = Limits()


def rate_limit(what: str, setting: str):
    """A route dependency spending one of the caller's tokens for `what` (nothing in single-user
    mode). Runs on the event loop: an in-memory update, or one Redis round trip."""
    async def _take(caller: CurrentCaller) -> None:
        settings = get_settings()
        if settings.rate_limits_enabled:
            limiter.take(caller.key_id or caller.tenant, what, getattr(settings, setting))

    return Depends(_take)
