"""Engine and session factory. A request's session commits once, when the route has returned."""
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Annotated, TypeVar

from fastapi import Depends
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings

T = TypeVar("T")


def make_engine(url: str, pre_ping: bool = True, connect_timeout: int | None = None) -> Engine:
    """An engine tuned for the URL's backend (SQLite needs WAL and a busy timeout for a worker)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=10, max_overflow=20,
                         connect_args={} if connect_timeout is None
                         else {"connect_timeout": connect_timeout})


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().resolved_database_url)


@lru_cache
def get_read_engine() -> Engine:
    """The hot reads' engine: autocommit (no BEGIN, COMMIT or ROLLBACK round trips) and no
    pre-ping (a round trip per checkout); a connection found dead is retried once instead
    (read_only). Connecting gives up after 2 s (app.fast_reads runs reads on the event loop)."""
    return make_engine(get_settings().resolved_database_url, pre_ping=False,
                       connect_timeout=2).execution_options(isolation_level="AUTOCOMMIT")


def read_only(fn: Callable[[Connection], T]) -> T:
    """fn(connection) on the read engine, once more on a fresh connection if the first one had
    died (the database restarted): fn must only read."""
    try:
        with get_read_engine().connect() as conn:
            return fn(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with get_read_engine().connect() as conn:
        return fn(conn)


def dispose_engine() -> None:
    """Close the pooled connections (at shutdown); the engines stay usable and reconnect."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    if get_read_engine.cache_info().currsize:
        get_read_engine().engine.dispose()


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run fn once the session's transaction has committed (e.g. send a task for a new row)."""
    session.info.setdefault("after_commit", []).append(fn)


def on_rollback(session: Session, fn: Callable[[], None]) -> None:
    """Run fn if the session's transaction does not commit (e.g. remove a file it stored)."""
    session.info.setdefault("on_rollback", []).append(fn)


def serialize_on(session: Session, key: str) -> None:
    """Hold a lock named `key` until the session's transaction ends, so that a check-then-insert
    (count a tenant's rows, refuse past a cap, insert) runs one transaction at a time per key.
    Take it before the count. PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of
    the key. SQLite has a single writer: a write statement takes the database's write lock (held
    to commit), and the reads after it see every committed row."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        k = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big",
                           signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": k})
    elif dialect == "sqlite":
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 0"))


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error, then run the matching hooks."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
        hooks = session.info.pop("after_commit", [])
    except BaseException:
        session.rollback()
        for undo in session.info.pop("on_rollback", []):
            undo()
        raise
    finally:
        session.close()
    for hook in hooks:
        hook()


def _request_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# scope="function": the commit happens after the route returns but before the response is sent,
# so a client never sees an id that a later request can't find.
DbSession = Annotated[Session, Depends(_request_session, scope="function")]
