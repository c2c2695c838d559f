"""Jobs: validate a request against the catalog and datasets, record it, send it after commit."""
from datetime import timedelta

from sqlalchemy.orm import Session

from app.base_models import catalog
from app.config import Settings
from app.datasets import repository as datasets
from app.db import serialize_on
from app.errors import Conflict, InvalidInput, RateLimited
from app.ids import new_id
from app.jobs import lifecycle, repository
from app.jobs.schemas import JobCreate, JobOut, QueueOut
from app.ml.config import resolve_hyperparameters
from app.models import FINAL_STATUSES, Checkpoint, Dataset, Job
from app.models.base import utcnow


def _dataset(session: Session, tenant: str, dataset_id: str, param: str) -> Dataset:
    ds = datasets.get(session, tenant, dataset_id, param=param)
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
    # Held to commit: concurrent creates count and insert one at a time, so the cap holds.
    serialize_on(session, f"active-jobs:{tenant}")
    active = repository.active_count(session, tenant)
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
    job = Job(id=new_id("job"), tenant_id=tenant, base_model=entry.id,
              training_dataset_id=train.id, validation_dataset_id=val.id if val else None,
              validation_split=req.validation_split, method=req.method, hyperparameters=hp,
              early_stopping=req.early_stopping.model_dump() if req.early_stopping else None,
              select_checkpoint_by=req.select_checkpoint_by, seed=req.seed, suffix=req.suffix,
              user_metadata=req.metadata,
              progress={"epoch": 0, "epochs": hp["epochs"], "step": 0, "total_steps": None,
                        "eta_seconds": None})
    return lifecycle.enqueue(session, job)


def get(session: Session, tenant: str, job_id: str) -> Job:
    return repository.get(session, tenant, job_id)


def cancel(session: Session, tenant: str, job_id: str) -> Job:
    """Cancel a queued job at once, or ask a running one to stop (app.jobs.lifecycle.cancel)."""
    job = get(session, tenant, job_id)
    done = lifecycle.cancel(session, job)
    session.refresh(job)
    if not done and job.status in FINAL_STATUSES:
        raise Conflict(f"Job {job.id} has already {job.status}; there is nothing to cancel.",
                       code="job_finished")
    return job


def checkpoint(session: Session, tenant: str, checkpoint_id: str) -> Checkpoint:
    return repository.checkpoint(session, tenant, checkpoint_id)


def queue_of(session: Session, settings: Settings, job_ids: list[str]) -> dict[str, QueueOut]:
    """{queued job id: its place and the live worker count} (one statement; {} for none)."""
    if not job_ids:
        return {}
    alive_since = utcnow() - timedelta(seconds=3 * settings.worker_heartbeat_s)
    places, workers = repository.queue_state(session, job_ids, alive_since)
    return {job_id: QueueOut(position=n, workers=workers) for job_id, n in places.items()}


def outs(session: Session, settings: Settings, jobs: list[Job]) -> list[JobOut]:
    """The jobs as the API shows them: `queue` filled in for the queued ones."""
    queue = queue_of(session, settings, [j.id for j in jobs if j.status == "queued"])
    return [JobOut.model_validate(j).model_copy(update={"queue": queue.get(j.id)}) for j in jobs]


def out(session: Session, settings: Settings, job: Job) -> JobOut:
    return outs(session, settings, [job])[0]
