"""Who is calling: `Authorization: Bearer <key>` names a tenant, and every object belongs to one.

Auth is on unless it is explicitly off, and it may be off only on a loopback address (the embedded
single-user default: `adapt-serve` on 127.0.0.1 runs without keys and says so at start). Every
object a tenant can't see answers 404, never 403.
"""
import hashlib
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.config import get_settings
from app.db import session_scope
from app.errors import Forbidden, Unauthorized
from app.keys import service as keys
from app.models.base import utcnow


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str | None
    is_admin: bool


class KeyCache:
    """Keys this process has verified lately, each with the revocation generation read before it
    was looked up: an entry counts only while the generation is still that one (no key was
    revoked since, by any process) and for key_cache_s seconds."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[Caller, str, float]] = {}

    @staticmethod
    def _slot(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()  # no secrets kept in memory as they are

    def get(self, token: str, generation: str) -> Caller | None:
        entry = self._entries.get(self._slot(token))
        if entry is None or entry[1] != generation or entry[2] < time.monotonic():
            return None
        return entry[0]

    def put(self, token: str, caller: Caller, generation: str, ttl: float) -> None:
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[self._slot(token)] = (caller, generation, time.monotonic() + ttl)


key_cache = KeyCache()


async def current_caller(request: Request) -> Caller:
    """The caller: the default tenant when auth is off (no I/O), else the key's tenant: from this
    process's key cache while no key has been revoked since, else looked up in the thread pool."""
    settings = get_settings()
    if not settings.auth_enabled:
        return Caller(settings.default_tenant, None, True)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing API key: send `Authorization: Bearer <key>`.",
                           headers={"WWW-Authenticate": "Bearer"})
    return await verify_cached(token.strip(), key_cache, settings.key_cache_s)


async def verify_cached(token: str, cache: KeyCache, ttl: float) -> Caller:
    # The generation is read before the key: a revocation committed after this read bumps it,
    # so what is cached below is dropped at the next request even if the lookup missed it.
    generation = keys.revocations.current() if ttl > 0 else None
    if generation is not None and (caller := cache.get(token, generation)) is not None:
        return caller
    caller = await run_in_threadpool(_verified_caller, token)
    if generation is not None:
        cache.put(token, caller, generation, ttl)
    return caller


def _verified_caller(token: str) -> Caller:
    with session_scope() as s:
        row = keys.verify(s, token)
        if row is None:
            raise Unauthorized("Invalid or revoked API key.",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        now = utcnow()
        last = row.last_used_at
        if last is None or (now - (last if last.tzinfo else last.replace(tzinfo=now.tzinfo))
                            ).total_seconds() > 60:  # a write a minute, not one a request
            row.last_used_at = now
        return Caller(row.tenant_id, row.id, row.is_admin)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def tenant_of(request: Request) -> str:
    """The caller's tenant, for a route that resolves it itself (the hot reads)."""
    return (await current_caller(request)).tenant


async def current_tenant(caller: CurrentCaller) -> str:  # no I/O: no thread-pool hop
    return caller.tenant


async def admin_caller(caller: CurrentCaller) -> Caller:
    if not caller.is_admin:
        raise Forbidden("This route needs an admin key.")
    return caller


Tenant = Annotated[str, Depends(current_tenant)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
