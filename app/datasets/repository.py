from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ACTIVE_STATUSES, QUALITY_FINAL_STATUSES, Dataset, Job, QualityReport
from app.pagination import Page, paginate
from app.repository import get_owned


def get(session: Session, tenant: str, dataset_id: str, param: str = "id") -> Dataset:
    """The tenant's dataset (a deleted one is gone), else 404."""
    return get_owned(session, Dataset, dataset_id, tenant, param=param,
                     visible=lambda ds: ds.status != "deleted")


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[Dataset], bool]:
    scope = select(Dataset).where(Dataset.tenant_id == tenant)  # a since-deleted cursor still pages
    stmt = scope.where(Dataset.status != "deleted")
    return paginate(session, stmt, Dataset.id, page, scope=scope)


def active_job_using(session: Session, dataset_id: str) -> str | None:
    stmt = select(Job.id).where(
        Job.status.in_(ACTIVE_STATUSES),
        (Job.training_dataset_id == dataset_id) | (Job.validation_dataset_id == dataset_id)
        | (Job.transfer_dataset_id == dataset_id))
    return session.scalars(stmt.limit(1)).first()


def latest_report(session: Session, dataset_id: str, against_id: str | None,
                  unfinished: bool = False) -> QualityReport | None:
    """The newest quality report of the dataset (against another one, or alone); with
    unfinished, only a queued or running one."""
    stmt = select(QualityReport).where(
        QualityReport.dataset_id == dataset_id,
        QualityReport.against_dataset_id == against_id if against_id
        else QualityReport.against_dataset_id.is_(None))
    if unfinished:
        stmt = stmt.where(QualityReport.status.not_in(QUALITY_FINAL_STATUSES))
    return session.scalars(stmt.order_by(QualityReport.created_at.desc()).limit(1)).first()
