"""Admin-only API for keys (the same operations as `adapt-admin keys`)."""
from typing import Annotated

from fastapi import APIRouter, Query

from app.keys.auth import AdminCaller
from app.db import DbSession
from app.keys import service
from app.keys.schemas import KeyCreate, KeyCreated, KeyOut
from app.schemas import ERROR_RESPONSES, NO_NUL, links

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=KeyCreated,
             responses=links("key_id", "revoke_key"))
def create_key(req: KeyCreate, session: DbSession, _: AdminCaller):
    row, key = service.create(session, req.tenant, req.name, req.admin)
    return KeyCreated(**KeyOut.model_validate(row).model_dump(), key=key)


@router.get("")
def list_keys(session: DbSession, _: AdminCaller,
              tenant: Annotated[str | None, Query(max_length=63, pattern=NO_NUL)] = None) -> dict:
    return {"object": "list", "data": [KeyOut.model_validate(k).model_dump(mode="json")
                                       for k in service.list_keys(session, tenant)],
            "has_more": False}


@router.delete("/{key_id}", response_model=KeyOut)
def revoke_key(key_id: str, session: DbSession, _: AdminCaller):
    return service.revoke(session, key_id)
