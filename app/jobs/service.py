"""Jobs: validate a request against the catalog and datasets, record it, send it after commit."""
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import queue
from app.base_models import catalog
from app.config import Settings
from app.datasets import repository as datasets
from app.db import after_commit
from app.errors import Conflict, InvalidInput, NotFound
from app.ids import new_id
from app.jobs import events, repository
from app.jobs.schemas import JobCreate
from app.ml.config import resolve_hyperparameters
from app.ratelimit import RateLimited
from app.models import ACTIVE_STATUSES, FINAL_STATUSES, Checkpoint, Dataset, Job
from app.models.base import utcnow
from app.webhooks import outbox


def _dataset(session: Session, tenant: str, dataset_id: str, param: str) -> Dataset:
    ds = datasets.get(session, tenant, dataset_id)
    if ds is None:
        raise NotFound(f"No dataset with id {dataset_id!r}.", param=param)
    if ds.status != "ready":
        raise InvalidInput(f"Dataset {ds.id} is {ds.status}, not ready.", param=param,
                           code="dataset_not_ready")
    return ds


def _check_compatible(base_task: str, train: Dataset, val: Dataset | None) -> None:
    if base_task != train.task:
        raise InvalidInput(f"The base model does {base_task} but dataset {train.id} is "
                           f"{train.task}.", param="base_model", code="task_mismatch")
    if val is not None:
        if val.task != train.task:
            raise InvalidInput("The validation dataset's task differs from the training "
                               "dataset's.", param="validation_dataset", code="task_mismatch")
        unknown = sorted(set(val.labels) - set(train.labels))
        if unknown:
            raise InvalidInput(f"The validation dataset has labels the training dataset lacks: "
                               f"{', '.join(unknown[:10])}.", param="validation_dataset")


def _check_active_cap(session: Session, settings: Settings, tenant: str) -> None:
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant, Job.status.in_(ACTIVE_STATUSES)))
    if active >= settings.max_active_jobs_per_tenant:
        raise RateLimited(f"{active} jobs are queued or running; at most "
                          f"{settings.max_active_jobs_per_tenant} at once. Wait for one to "
                          "finish or cancel one.", code="too_many_active_jobs",
                          headers={"Retry-After": "30"})


def create(session: Session, settings: Settings, tenant: str, req: JobCreate) -> Job:
    """Insert a queued job; its task is sent only once the row has committed."""
    entry = catalog.resolve(settings, req.base_model, session, tenant)
    train = _dataset(session, tenant, req.training_dataset, "training_dataset")
    val = (_dataset(session, tenant, req.validation_dataset, "validation_dataset")
           if req.validation_dataset else None)
    _check_compatible(entry.task, train, val)
    _check_active_cap(session, settings, tenant)
    try:
        hp = resolve_hyperparameters(req.method, req.hyperparameters, entry.task)
    except ValueError as exc:
        name, message = exc.args
        raise InvalidInput(message, param=f"hyperparameters.{name}") from None
    job = Job(id=new_id("job"), tenant_id=tenant, status="queued", base_model=entry.id,
              training_dataset_id=train.id, validation_dataset_id=val.id if val else None,
              validation_split=req.validation_split, method=req.method, hyperparameters=hp,
              early_stopping=req.early_stopping.model_dump() if req.early_stopping else None,
              select_checkpoint_by=req.select_checkpoint_by, seed=req.seed, suffix=req.suffix,
              user_metadata=req.metadata, attempts=0, enqueued_at=utcnow(),
              progress={"epoch": 0, "epochs": hp["epochs"], "step": 0, "total_steps": None,
                        "eta_seconds": None})
    session.add(job)
    session.flush()
    events.record(session, job.id, "job queued", type="status", data={"status": "queued"})
    after_commit(session, lambda: queue.send_training(job.id))
    return job


def get(session: Session, tenant: str, job_id: str) -> Job:
    job = repository.get(session, tenant, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id!r}.", param="id")
    return job


def cancel(session: Session, tenant: str, job_id: str) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop between steps.
    Both are conditional updates, so a worker claiming the job at the same moment can't be lost."""
    job = get(session, tenant, job_id)
    transitions = (("queued", "cancelled", "job cancelled before it started"),
                   ("running", "cancelling", "cancel requested"))
    for before, after, message in transitions:
        values = {"status": after, **({"finished_at": utcnow()} if after == "cancelled" else {})}
        done = session.execute(update(Job).where(Job.id == job.id, Job.status == before)
                               .values(**values)).rowcount
        if done:
            events.record(session, job.id, message, type="status", data={"status": after})
            if after == "cancelled":
                outbox.job_finished(session, job.id, after)
            break
    session.refresh(job)
    if not done and job.status in FINAL_STATUSES:
        raise Conflict(f"Job {job.id} has already {job.status}; there is nothing to cancel.",
                       code="job_finished")
    return job


def checkpoint(session: Session, tenant: str, checkpoint_id: str) -> Checkpoint:
    ckpt = repository.checkpoint(session, tenant, checkpoint_id)
    if ckpt is None:
        raise NotFound(f"No checkpoint with id {checkpoint_id!r}.", param="id")
    return ckpt
