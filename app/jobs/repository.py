from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.models import ACTIVE_STATUSES, Checkpoint, Job, JobEvent, JobMetric, Worker
from app.pagination import Page, paginate
from app.repository import get_owned


def get(session: Session, tenant: str, job_id: str) -> Job:
    return get_owned(session, Job, job_id, tenant)


def status_and_progress(session: Session, job_id: str) -> tuple[str, dict | None]:
    return session.execute(select(Job.status, Job.progress).where(Job.id == job_id)).one()


def active_count(session: Session, tenant: str) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant, Job.status.in_(ACTIVE_STATUSES)))


def queue_state(session: Session, job_ids: list[str],
                alive_since: datetime) -> tuple[dict[str, int], int]:
    """({queued job id: its 1-based place among the queued jobs of every tenant, by enqueued_at},
    the number of workers heard from since alive_since), in one statement of COUNTs. Only counts
    come back: nothing of the other tenants' jobs."""
    other = aliased(Job)
    places = []
    for job_id in job_ids:
        mine = select(Job.enqueued_at).where(Job.id == job_id).scalar_subquery()
        places.append(select(func.count()).select_from(other).where(
            other.status == "queued",
            or_(other.enqueued_at < mine, and_(other.enqueued_at == mine, other.id <= job_id)))
            .scalar_subquery())
    workers = select(func.count()).select_from(Worker).where(
        Worker.heartbeat_at >= alive_since).scalar_subquery()
    row = session.execute(select(workers, *places)).one()
    return {job_id: max(n, 1) for job_id, n in zip(job_ids, row[1:], strict=True)}, row[0]


def worker_heartbeat(session: Session, worker_id: str, now: datetime, forget_before: datetime) -> None:
    """The worker's row, refreshed (made on its first beat); rows of long-dead workers removed."""
    done = session.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now))
    if not done.rowcount:
        session.add(Worker(id=worker_id, started_at=now, heartbeat_at=now))
    session.execute(delete(Worker).where(Worker.heartbeat_at < forget_before))


def worker_gone(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


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
