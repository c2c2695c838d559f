from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import NO_NUL, ApiModel, OptionalTimestamp, Timestamp


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    tenant: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = Field(default="", max_length=255, pattern=NO_NUL)
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
