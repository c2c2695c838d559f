from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import ACTIVE_STATUSES, Checkpoint, Job, JobEvent, JobMetric
from app.pagination import Page, paginate
from app.repository import get_owned


def get(session: Session, tenant: str, job_id: str) -> Job:
    return get_owned(session, Job, job_id, tenant)


def status_and_progress(session: Session, job_id: str) -> tuple[str, dict | None]:
    return session.execute(select(Job.status, Job.progress).where(Job.id == job_id)).one()


def active_count(session: Session, tenant: str) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant, Job.status.in_(ACTIVE_STATUSES)))


def list_page(session: Session, tenant: str, page: Page, status: str | None) -> tuple[list[Job], bool]:
    scope = stmt = select(Job).where(Job.tenant_id == tenant)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job.id, page, scope=scope)


def events_after(session: Session, job_id: str, after: int, limit: int = 1000) -> list[JobEvent]:
    stmt = (select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after)
            .order_by(JobEvent.seq).limit(limit))
    return list(session.scalars(stmt))


def metrics(session: Session, job_id: str) -> list[JobMetric]:
    stmt = select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.step,
                                                                         JobMetric.name)
    return list(session.scalars(stmt))


def checkpoints(session: Session, job_id: str) -> list[Checkpoint]:
    stmt = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
    return list(session.scalars(stmt))


def checkpoint(session: Session, tenant: str, checkpoint_id: str,
               param: str = "id") -> Checkpoint:
    return get_owned(session, Checkpoint, checkpoint_id, tenant, param=param)


def insert_metrics(session: Session, job_id: str, step: int, epoch: float, values: dict) -> None:
    """Idempotent: a re-run of the same step leaves the first row and adds no duplicate."""
    rows = [{"job_id": job_id, "step": step, "epoch": epoch, "name": k, "value": float(v)}
            for k, v in values.items()]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(JobMetric).values(rows).on_conflict_do_nothing(
        index_elements=["job_id", "step", "name"]))


def checkpoint_at(session: Session, job_id: str, step: int) -> Checkpoint | None:
    return session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id,
                                                    Checkpoint.step == step)).first()


def save_checkpoint(session: Session, ckpt: Checkpoint, is_new: bool) -> None:
    """Record a checkpoint (a re-run of the same step replaces, never duplicates); the best one
    is the only one marked best."""
    if ckpt.is_best:
        for other in session.scalars(select(Checkpoint).where(Checkpoint.job_id == ckpt.job_id,
                                                              Checkpoint.id != ckpt.id)):
            other.is_best = False
    if is_new:
        session.add(ckpt)


def counts_by_status(session: Session) -> dict[str, int]:
    """Every tenant's jobs by status (for the operator's metrics)."""
    return dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def running_progress(session: Session) -> list[tuple[str, str, dict | None]]:
    """(id, base model, progress) of every running job (for the operator's metrics)."""
    return list(session.execute(select(Job.id, Job.base_model, Job.progress)
                                .where(Job.status == "running")).all())
