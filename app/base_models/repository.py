from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import UploadedBaseModel
from app.repository import get_owned


def for_tenant(session: Session, tenant: str) -> list[UploadedBaseModel]:
    return list(session.scalars(select(UploadedBaseModel).where(
        UploadedBaseModel.tenant_id == tenant).order_by(UploadedBaseModel.id.desc())))


def get(session: Session, tenant: str, base_model_id: str) -> UploadedBaseModel:
    return get_owned(session, UploadedBaseModel, base_model_id, tenant, param="base_model",
                     message=f"No base model {base_model_id!r}; GET /v1/base-models lists them.")
