from datetime import datetime

from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.models import ACTIVE_STATUSES, Checkpoint, Job, JobEvent, JobMetric, Worker
from app.pagination import Page, paginate
from app.repository import columns, get_owned


def get(session: Session, tenant: str, job_id: str) -> Job:
    return get_owned(session, Job, job_id, tenant)


# What JobOut shows, by attribute name (its validation aliases): read by the Core read path.
OUT_COLUMNS = ("id", "status", "base_model", "training_dataset_id", "validation_dataset_id",
               "validation_split", "method", "hyperparameters", "early_stopping",
               "select_checkpoint_by", "seed", "suffix", "progress", "metrics", "error",
               "model_id", "source_model_id", "transfer_dataset_id", "attempts", "created_at",
               "started_at", "finished_at", "user_metadata", "resources", "dry_run", "preflight")


def out_rows(conn: Connection, tenant: str, page: Page, status: str | None
             ) -> tuple[list[dict], bool]:
    """A page of the tenant's jobs as dicts of OUT_COLUMNS (Core: no ORM objects)."""
    scope = select(Job.id).where(Job.tenant_id == tenant)
    stmt = select(*columns(Job, OUT_COLUMNS)).where(Job.tenant_id == tenant)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(conn, stmt, Job.id, page, scope=scope, mappings=True)


def status_and_progress(session: Session, job_id: str) -> tuple[str, dict | None]:
    return session.execute(select(Job.status, Job.progress).where(Job.id == job_id)).one()


def active_count(session: Session, tenant: str) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant, Job.status.in_(ACTIVE_STATUSES), Job.dry_run.is_(False)))


def queue_state(session: Session | Connection, job_ids: list[str],
                alive_since: datetime) -> dict[str, tuple[int, int]]:
    """{queued job id: (its 1-based place among the queued jobs of every tenant, by enqueued_at;
    the workers heard from since alive_since that can take it: of its device class, holding its
    GPUs; any worker for a job that runs anywhere)}, in one statement of COUNTs. Only counts
    come back: nothing of the other tenants' jobs."""
    other, job = aliased(Job), aliased(Job)
    device = func.coalesce(job.resources["device"].as_string(), "auto")
    gpus = func.coalesce(job.resources["gpus"].as_integer(), 0)
    counts = []
    for job_id in job_ids:
        mine = select(Job.enqueued_at).where(Job.id == job_id).scalar_subquery()
        counts.append(select(func.count()).select_from(other).where(
            other.status == "queued",
            or_(other.enqueued_at < mine, and_(other.enqueued_at == mine, other.id <= job_id)))
            .scalar_subquery())
        counts.append(select(func.count()).select_from(Worker).join(job, job.id == job_id).where(
            Worker.heartbeat_at >= alive_since,
            or_(device == "auto", and_(Worker.device == device,
                                       func.coalesce(Worker.gpus, 0) >= gpus)))
            .scalar_subquery())
    row = session.execute(select(*counts)).one()
    return {job_id: (max(row[2 * i], 1), row[2 * i + 1]) for i, job_id in enumerate(job_ids)}


def live_worker_classes(session: Session, alive_since: datetime) -> dict[str, int]:
    """{device class: the most GPUs one of its workers holds} over the workers heard from since
    alive_since (workers from before classes, device NULL, take only jobs that run anywhere)."""
    rows = session.execute(select(Worker.device, func.max(Worker.gpus)).where(
        Worker.heartbeat_at >= alive_since, Worker.device.is_not(None))
        .group_by(Worker.device)).all()
    return {device: gpus or 0 for device, gpus in rows}


def worker_heartbeat(session: Session, worker_id: str, now: datetime, forget_before: datetime,
                     device: str | None = None, gpus: int | None = None) -> None:
    """The worker's row, refreshed (made on its first beat); rows of long-dead workers removed."""
    done = session.execute(update(Worker).where(Worker.id == worker_id).values(
        heartbeat_at=now, device=device, gpus=gpus))
    if not done.rowcount:
        session.add(Worker(id=worker_id, started_at=now, heartbeat_at=now, device=device,
                           gpus=gpus))
    session.execute(delete(Worker).where(Worker.heartbeat_at < forget_before))


def worker_gone(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


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
