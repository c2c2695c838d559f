"""Who is calling: `Authorization: Bearer <key>` names a tenant, and every object belongs to one.

Auth is on unless it is explicitly off, and it may be off only on a loopback address (the embedded
single-user default: `adapt-serve` on 127.0.0.1 runs without keys and says so at start). Every
object a tenant can't see answers 404, never 403.
"""
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


async def current_caller(request: Request) -> Caller:
    """The caller: the default tenant when auth is off (no I/O), else the key's tenant (looked up
    in the thread pool)."""
    settings = get_settings()
    if not settings.auth_enabled:
        return Caller(settings.default_tenant, None, True)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing API key: send `Authorization: Bearer <key>`.",
                           headers={"WWW-Authenticate": "Bearer"})
    return await run_in_threadpool(_verified_caller, token.strip())


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


async def current_tenant(caller: CurrentCaller) -> str:  # no I/O: no thread-pool hop
    return caller.tenant


async def admin_caller(caller: CurrentCaller) -> Caller:
    if not caller.is_admin:
        raise Forbidden("This route needs an admin key.")
    return caller


Tenant = Annotated[str, Depends(current_tenant)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
