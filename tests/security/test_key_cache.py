"""API keys verified once are trusted from each API process's cache, yet a revocation stops a key
at once in every process: the revocation generation (Redis with a Redis broker, else the database
on PostgreSQL, else a file in the data dir) is read on every request and a changed one voids what
was cached."""
import asyncio
import os

import httpx
import pytest
from sqlalchemy import text
from helpers import keys_required, new_key, uvicorn_server, uvicorn_servers

from app.db import session_scope
from app.errors import Unauthorized
from app.keys import service as keys
from app.keys.auth import KeyCache, verify_cached
from app.shared_state import Generation, held_connection, redis_client

PG_URL = os.environ.get("ADAPT_TEST_DATABASE_URL", "")
needs_postgresql = pytest.mark.skipif(
    not PG_URL, reason="machines sharing PostgreSQL (ADAPT_TEST_DATABASE_URL)")


def token_of(headers: dict) -> str:
    return headers["Authorization"].split(" ", 1)[1]


def test_two_caches_both_drop_a_revoked_key(environment):
    """Two caches, as two API processes hold them: both trust the key, then both refuse it."""
    key_id, headers = new_key("kc-one")
    first, second = KeyCache(), KeyCache()
    for cache in (first, second):
        assert asyncio.run(verify_cached(token_of(headers), cache, 30)).tenant == "kc-one"
    with session_scope() as s:
        keys.revoke(s, key_id)
    for cache in (first, second):
        with pytest.raises(Unauthorized):
            asyncio.run(verify_cached(token_of(headers), cache, 30))


def test_a_cached_key_is_served_without_the_database(environment, monkeypatch):
    """The cache does spare the lookup: a cached key is accepted while the lookup would fail."""
    _, headers = new_key("kc-two")
    cache = KeyCache()
    asyncio.run(verify_cached(token_of(headers), cache, 30))

    def no_database(_token):
        raise AssertionError("looked up again")

    monkeypatch.setattr("app.keys.auth._verified_caller", no_database)
    assert asyncio.run(verify_cached(token_of(headers), cache, 30)).tenant == "kc-two"
    with pytest.raises(AssertionError):  # key_cache_s 0: every request looks the key up
        asyncio.run(verify_cached(token_of(headers), cache, 0))


def test_a_key_revoked_here_stops_working_in_another_api_process(environment):
    key_id, headers = new_key("kc-three")
    with keys_required(), uvicorn_server(ADAPT_AUTH="on") as base:
        assert httpx.get(f"{base}/v1/jobs", headers=headers).status_code == 200
        assert httpx.get(f"{base}/v1/jobs", headers=headers).status_code == 200  # now cached
        with session_scope() as s:
            keys.revoke(s, key_id)
        res = httpx.get(f"{base}/v1/jobs", headers=headers)
        assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized"


@needs_postgresql
def test_a_key_revoked_on_one_machine_stops_working_on_another_sharing_postgresql(tmp_path):
    """Two machines: an API process each, with data dirs of their own, one PostgreSQL database
    and no Redis (each has the SQLAlchemy broker in its data dir). A key that B has verified and
    cached is refused by B as soon as A has answered its revocation."""
    key_id, headers = new_key("kc-four")
    _, admin = new_key("kc-four-admin", admin=True)

    def machine(name: str) -> dict:
        (tmp_path / name).mkdir()
        return {"ADAPT_AUTH": "on", "ADAPT_DATA_DIR": str(tmp_path / name),
                "ADAPT_BROKER_URL": "", "ADAPT_KEY_CACHE_S": "300"}

    with uvicorn_servers(machine("a"), machine("b")) as (a, b):
        for _ in range(2):  # the second one from B's cache
            assert httpx.get(f"{b}/v1/jobs", headers=headers).status_code == 200
        assert httpx.get(f"{b}/v1/jobs", headers=admin).status_code == 200
        res = httpx.delete(f"{a}/v1/admin/keys/{key_id}", headers=admin)
        assert res.status_code == 200 and res.json()["revoked_at"]
        res = httpx.get(f"{b}/v1/jobs", headers=headers)
        assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized"
        assert httpx.get(f"{a}/v1/jobs", headers=headers).status_code == 401
        assert httpx.get(f"{b}/v1/jobs", headers=admin).status_code == 200  # others still work
    assert not any(tmp_path.glob("*/.key-revocations.generation"))  # nothing local to either


@needs_postgresql
def test_on_postgresql_without_redis_the_generation_commits_with_the_revocation(environment,
                                                                               monkeypatch):
    monkeypatch.setattr("app.shared_state.redis_client", lambda: None)
    generation = keys.revocations
    assert generation.in_database()
    key_id, _ = new_key("kc-five")
    before = generation.current()
    with pytest.raises(RuntimeError), session_scope() as s:
        keys.revoke(s, key_id)
        raise RuntimeError("the revocation rolls back")
    assert generation.current() == before  # the bump rolled back with it
    with session_scope() as s:
        keys.revoke(s, key_id)
    assert generation.current() not in (before, None)
    with session_scope() as s:
        keys.revoke(s, key_id)  # already revoked: nothing changes, caches stay
    assert generation.current() == str(int(before) + 1)
    with session_scope() as s:  # the database restarted: the held connection is gone
        s.execute(text("SELECT pg_terminate_backend(:pid)"),
                  {"pid": held_connection._conn.info.backend_pid})
    assert generation.current() == str(int(before) + 1)  # read again on a fresh one


def test_a_generation_the_database_cannot_give_trusts_no_cache(environment, monkeypatch):
    """The database doesn't answer: no cached key counts (None), and it is not asked again on
    every request for a while (each ask would hold the event loop up)."""
    generation = Generation("kc-unreadable")
    asked = []

    def unreachable(sql, params):
        asked.append(params)
        raise OSError("connection refused")

    monkeypatch.setattr("app.shared_state.redis_client", lambda: None)
    monkeypatch.setattr(Generation, "in_database", staticmethod(lambda: True))
    monkeypatch.setattr(held_connection, "one", unreachable)
    assert generation.current() is None and generation.current() is None
    assert len(asked) == 1
    monkeypatch.setattr(generation, "_database_unread_until", 0.0)  # the back-off is over
    monkeypatch.setattr(held_connection, "one", lambda sql, params: 7)
    assert generation.current() == "7"


def test_on_sqlite_the_generation_stays_a_file_in_the_data_dir(environment):
    if not environment.resolved_database_url.startswith("sqlite") or redis_client() is not None:
        pytest.skip("the embedded default (SQLite, no Redis)")
    generation = keys.revocations
    assert not generation.in_database()
    key_id, _ = new_key("kc-six")
    before = generation.current()
    with session_scope() as s:
        keys.revoke(s, key_id)
    after = (environment.data_dir / ".key-revocations.generation").read_text()
    assert after != before and generation.current() == after
