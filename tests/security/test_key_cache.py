"""API keys verified once are trusted from each API process's cache, yet a revocation stops a key
at once in every process: the revocation generation (Redis with a Redis broker, else a file in
the data dir) is read on every request and a changed one voids what was cached."""
import asyncio

import httpx
import pytest
from helpers import keys_required, new_key, uvicorn_server

from app.db import session_scope
from app.errors import Unauthorized
from app.keys import service as keys
from app.keys.auth import KeyCache, verify_cached


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
