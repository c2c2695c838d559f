"""Idempotency-Key on creating POSTs: the same key with the same request replays the first
response; the same key with another request is 409. The key row is inserted in the same
transaction as the object it creates, so of 50 concurrent identical requests exactly one creates
and the other 49 replay it."""
import hashlib
import json
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import IdempotencyKey


def request_hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Idempotency:
    def __init__(self, key: str | None):
        self.key = key

    def _existing(self, session: Session, tenant: str) -> IdempotencyKey | None:
        return session.scalars(select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant, IdempotencyKey.key == self.key)).first()

    def _replay(self, row: IdempotencyKey, digest: str) -> JSONResponse:
        if row.request_hash != digest:
            raise Conflict("This Idempotency-Key was already used with a different request.",
                           code="idempotency_key_reused", param="Idempotency-Key")
        return JSONResponse(row.body, status_code=row.status_code,
                            headers={"Idempotent-Replayed": "true"})

    def run(self, session: Session, tenant: str, digest: str, create: Callable[[], dict],
            status_code: int = 201):
        """create() once per key; later requests with the key get its response again."""
        if not self.key:
            return JSONResponse(create(), status_code=status_code)
        if row := self._existing(session, tenant):
            return self._replay(row, digest)
        row = IdempotencyKey(tenant_id=tenant, key=self.key, request_hash=digest)
        session.add(row)
        try:
            session.flush()  # blocks behind a concurrent holder of the key until it commits
        except IntegrityError:
            session.rollback()
            return self._replay(self._existing(session, tenant), digest)
        body = create()
        row.status_code, row.body = status_code, body
        return JSONResponse(body, status_code=status_code)


async def _idempotency(idempotency_key: Annotated[str | None, Header(max_length=255)] = None):
    return Idempotency(idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
