"""State that every API process of a deployment must agree on, kept where they all can read it
cheaply: in Redis when the broker is Redis (every process on every machine), else in files under
the data dir (every process on this machine, which is where the embedded default runs them)."""
import logging
import os
import uuid
from functools import lru_cache
from pathlib import Path

import redis

from app.config import get_settings

log = logging.getLogger(__name__)


def redis_url() -> str | None:
    url = get_settings().resolved_broker_url
    return url if url.startswith(("redis://", "rediss://")) else None


@lru_cache
def redis_client():
    """One client (a connection pool) per process for redis_url(); None without Redis."""
    url = redis_url()
    if url is None:
        return None
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


class Generation:
    """A value that changes whenever `bump` is called in any process (e.g. a key was revoked):
    a reader compares it with the one it saw when it cached something."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _file(self) -> Path:
        return get_settings().data_dir / f".{self.name}.generation"

    def current(self) -> str | None:
        """The generation now; None when it can't be read (Redis unreachable): trust no cache."""
        client = redis_client()
        if client is not None:
            try:
                return (client.get(f"adapt:{self.name}:generation") or b"0").decode()
            except redis.RedisError as exc:
                log.warning("can't read the %s generation from Redis: %s", self.name, exc)
                return None
        try:
            return self._file().read_text()
        except FileNotFoundError:
            return "0"

    def bump(self) -> None:
        client = redis_client()
        if client is not None:
            try:
                client.incr(f"adapt:{self.name}:generation")
            except redis.RedisError as exc:  # what changed has committed: say so, don't fail it
                log.error("can't bump the %s generation in Redis: %s (caches keep it for up "
                          "to ADAPT_KEY_CACHE_S)", self.name, exc)
            return
        path = self._file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(uuid.uuid4().hex)
        os.replace(tmp, path)  # readers see the old value or the new one, never a torn one
