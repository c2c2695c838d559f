"""Admin-only API for keys (the same operations as `adapt-admin keys`)."""
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.auth import AdminCaller
from app.db import DbSession
from app.keys import service
from app.schemas import ERROR_RESPONSES, ApiModel, OptionalTimestamp, Timestamp

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], responses=ERROR_RESPONSES)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tenant: str = Field(min_length=1, max_length=63)
    name: str = Field(default="", max_length=255)
    admin: bool = False


class KeyOut(ApiModel):
    object: Literal["api_key"] = "api_key"
    id: str
    tenant: str = Field(validation_alias="tenant_id")
    name: str
    admin: bool = Field(validation_alias="is_admin")
    created_at: Timestamp
    revoked_at: OptionalTimestamp


class KeyCreated(KeyOut):
    key: str  # shown once


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(req: KeyCreate, session: DbSession, _: AdminCaller):
    row, key = service.create(session, req.tenant, req.name, req.admin)
    return KeyCreated(**KeyOut.model_validate(row).model_dump(), key=key)


@router.get("")
def list_keys(session: DbSession, _: AdminCaller, tenant: str | None = None) -> dict:
    return {"object": "list", "data": [KeyOut.model_validate(k).model_dump(mode="json")
                                       for k in service.list_keys(session, tenant)],
            "has_more": False}


@router.delete("/{key_id}", response_model=KeyOut)
def revoke_key(key_id: str, session: DbSession, _: AdminCaller):
    return service.revoke(session, key_id)
