from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey


def by_prefix(session: Session, prefix: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()


def list_keys(session: Session, tenant: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.id.desc())
    if tenant:
        stmt = stmt.where(ApiKey.tenant_id == tenant)
    return list(session.scalars(stmt))


def get(session: Session, key_id: str) -> ApiKey | None:
    """Any tenant's key (admin only: keys are not tenant-scoped objects)."""
    return session.get(ApiKey, key_id)
