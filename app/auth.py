"""Who is calling. The embedded single-user default binds 127.0.0.1 and runs without keys: every
object belongs to the default tenant (API keys and tenant isolation arrive with the security work;
every table already carries tenant_id)."""
from typing import Annotated

from fastapi import Depends

from app.config import get_settings


def current_tenant() -> str:
    return get_settings().default_tenant


Tenant = Annotated[str, Depends(current_tenant)]
