from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Job, JobEvent, JobMetric
from app.pagination import Page, paginate


def get(session: Session, tenant: str, job_id: str) -> Job | None:
    job = session.get(Job, job_id)
    return job if job is not None and job.tenant_id == tenant else None


def list_page(session: Session, tenant: str, page: Page, status: str | None) -> tuple[list[Job], bool]:
    stmt = select(Job).where(Job.tenant_id == tenant)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job.id, page)


def events_after(session: Session, job_id: str, after: int, limit: int = 1000) -> list[JobEvent]:
    stmt = (select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
            .order_by(JobEvent.id).limit(limit))
    return list(session.scalars(stmt))


def metrics(session: Session, job_id: str) -> list[JobMetric]:
    stmt = select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.step,
                                                                         JobMetric.name)
    return list(session.scalars(stmt))


def checkpoints(session: Session, job_id: str) -> list[Checkpoint]:
    stmt = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
    return list(session.scalars(stmt))


def checkpoint(session: Session, tenant: str, checkpoint_id: str) -> Checkpoint | None:
    ckpt = session.get(Checkpoint, checkpoint_id)
    return ckpt if ckpt is not None and ckpt.tenant_id == tenant else None
