"""State that every API process of a deployment must agree on, kept where they all can read it
cheaply: in Redis when the broker is Redis (every process on every machine); else, on PostgreSQL,
in the database (every process on every machine that shares it); else (the embedded SQLite
default) in files under the data dir (every process on this machine, which is where the embedded
default runs them)."""
import logging
import os
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path

import redis
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import after_commit, get_read_engine
from app.models import SharedGeneration

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


class HeldConnection:
    """One autocommit DBAPI connection that this process holds for the hottest one-row reads
    (the generation, on every keyed request): no pool checkout, reset or SQLAlchemy result per
    read, which cost several times the read itself (benchmarks/key_revocation_check.py). A read
    that fails is retried once on a fresh connection (the database restarted); a forked child
    opens its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn = None
        self._pid = 0

    def _connection(self):
        if self._conn is None or self._pid != os.getpid():
            proxied = get_read_engine().raw_connection()  # the engine's URL and connect_timeout
            proxied.detach()  # ours, not the pool's
            self._conn, self._pid = proxied.dbapi_connection, os.getpid()
            self._conn.autocommit = True
        return self._conn

    def close(self) -> None:
        """Close the connection (at shutdown); the next read opens a new one."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is being dropped because it failed
                pass

    def one(self, sql: str, params: tuple):
        """The first column of the first row of sql (DBAPI "%s" parameters), or None."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    cur = self._connection().cursor()
                    try:
                        cur.execute(sql, params)
                        row = cur.fetchone()
                    finally:
                        cur.close()
                    return None if row is None else row[0]
                except Exception:
                    self._drop()
                    if attempt == 2:
                        raise


held_connection = HeldConnection()


class Generation:
    """A value that changes whenever a transaction that called `bump` commits, in any process
    (e.g. a key was revoked): a reader compares it with the one it saw when it cached something.

    Where it lives: a Redis counter when the broker is Redis; else, when the database is
    PostgreSQL, a row of shared_generations, bumped in the revoking transaction itself (committed
    with it or not at all) and read with one primary-key SELECT on a connection the process holds
    for it; else (SQLite, the embedded default) a file in the data dir."""

    # After a failed read of the database generation, readers trust no cache for this long
    # without trying again: a database that doesn't answer stalls the event loop once, not on
    # every request (the key lookups, in the thread pool, meet the outage anyway).
    DATABASE_BACKOFF_S = 5.0
    SELECT = "SELECT value FROM shared_generations WHERE name = %s"

    def __init__(self, name: str) -> None:
        self.name = name
        table = SharedGeneration.__table__
        self._bump = pg_insert(table).values(name=name, value=1).on_conflict_do_update(
            index_elements=[table.c.name], set_={"value": table.c.value + 1})
        self._database_unread_until = 0.0

    def _file(self) -> Path:
        return get_settings().data_dir / f".{self.name}.generation"

    @staticmethod
    def in_database() -> bool:
        """Whether the generation lives in the database: PostgreSQL, and no Redis."""
        return (redis_client() is None
                and get_settings().resolved_database_url.startswith("postgresql"))

    def current(self) -> str | None:
        """The generation now; None when it can't be read (Redis or the database unreachable):
        trust no cache."""
        client = redis_client()
        if client is not None:
            try:
                return (client.get(f"adapt:{self.name}:generation") or b"0").decode()
            except redis.RedisError as exc:
                log.warning("can't read the %s generation from Redis: %s", self.name, exc)
                return None
        if self.in_database():
            return self._from_database()
        try:
            return self._file().read_text()
        except FileNotFoundError:
            return "0"

    def _from_database(self) -> str | None:
        if time.monotonic() < self._database_unread_until:
            return None
        try:
            value = held_connection.one(self.SELECT, (self.name,))
        except Exception as exc:  # noqa: BLE001 - whatever the failure, no cache is trusted
            self._database_unread_until = time.monotonic() + self.DATABASE_BACKOFF_S
            log.warning("can't read the %s generation from the database: %s (no cached key "
                        "is trusted for %.0f s)", self.name, exc, self.DATABASE_BACKOFF_S)
            return None
        return str(value or 0)

    def bump(self, session: Session) -> None:
        """Change the generation once session's transaction has committed: in the database, in
        that same transaction (the change and the bump commit together); in Redis or the file,
        right after the commit."""
        if self.in_database():
            session.execute(self._bump)
        else:
            after_commit(session, self._bump_after_commit)

    def _bump_after_commit(self) -> None:
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
