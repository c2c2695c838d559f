from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ACTIVE_STATUSES, Dataset, Job
from app.pagination import Page, paginate


def get(session: Session, tenant: str, dataset_id: str) -> Dataset | None:
    ds = session.get(Dataset, dataset_id)
    return ds if ds is not None and ds.tenant_id == tenant and ds.status != "deleted" else None


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[Dataset], bool]:
    stmt = select(Dataset).where(Dataset.tenant_id == tenant, Dataset.status != "deleted")
    return paginate(session, stmt, Dataset.id, page)


def active_job_using(session: Session, dataset_id: str) -> str | None:
    stmt = select(Job.id).where(
        Job.status.in_(ACTIVE_STATUSES),
        (Job.training_dataset_id == dataset_id) | (Job.validation_dataset_id == dataset_id))
    return session.scalars(stmt.limit(1)).first()
