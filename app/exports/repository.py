from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Export
from app.pagination import Page, paginate
from app.repository import get_owned


def get(session: Session, tenant: str, export_id: str, model_id: str | None = None) -> Export:
    """The tenant's export (of this model, when one is named), else 404."""
    return get_owned(session, Export, export_id, tenant,
                     visible=lambda e: model_id is None or e.model_id == model_id)


def list_page(session: Session, tenant: str, model_id: str, page: Page) -> tuple[list[Export], bool]:
    return paginate(session, select(Export).where(Export.tenant_id == tenant,
                                                  Export.model_id == model_id), Export.id, page)
