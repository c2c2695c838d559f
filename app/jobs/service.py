"""Jobs: validate a request against the catalog and datasets, record it, send it after commit."""
from datetime import timedelta

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.base_models import catalog
from app.config import Settings
from app.datasets import repository as datasets
from app.db import read_only, serialize_on
from app.errors import Conflict, InvalidInput, RateLimited
from app.ids import new_id
from app.jobs import compression, lifecycle, repository
from app.jobs.schemas import JobCreate, JobOut, PruneCreate, QueueOut, ResourcesIn
from app.ml.config import resolve_hyperparameters
from app.models import FINAL_STATUSES, Checkpoint, Dataset, Job
from app.models.base import utcnow
from app.pagination import Page
from app.repository import owned_row


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


def _transfer_dataset(session: Session, tenant: str, req: JobCreate, train: Dataset) -> Dataset:
    """A distill job's transfer set: a ready text dataset of the tenant (its labels unread)."""
    if req.method != "distill":
        raise InvalidInput("transfer_dataset applies to method distill only: its texts are "
                           "labelled by the teacher.", param="transfer_dataset")
    ds = _dataset(session, tenant, req.transfer_dataset, "transfer_dataset")
    if train.task != "text-classification" or ds.task != train.task:
        raise InvalidInput(f"A transfer set is for text models: dataset {ds.id} is {ds.task} and "
                           f"the training dataset {train.id} is {train.task}.",
                           param="transfer_dataset", code="task_mismatch")
    return ds


def _check_active_cap(session: Session, settings: Settings, tenant: str) -> None:
    # Held to commit: concurrent creates count and insert one at a time, so the cap holds.
    serialize_on(session, f"active-jobs:{tenant}")
    active = repository.active_count(session, tenant)
    if active >= settings.max_active_jobs_per_tenant:
        raise RateLimited(f"{active} jobs are queued or running; at most "
                          f"{settings.max_active_jobs_per_tenant} at once. Wait for one to "
                          "finish or cancel one.", code="too_many_active_jobs",
                          headers={"Retry-After": "30"})


def _alive_since(settings: Settings):
    """Workers heard from since then take jobs (3 heartbeat intervals)."""
    return utcnow() - timedelta(seconds=3 * settings.worker_heartbeat_s)


def _check_capacity(session: Session, settings: Settings, want: ResourcesIn) -> None:
    """A job that no worker class can take is refused now rather than left queued for ever. The
    classes are those declared (ADAPT_WORKER_CLASSES) and those of the live workers; when neither
    says anything (no worker heard from yet, nothing declared) the job is accepted."""
    if want.device == "auto":
        return  # every worker takes it
    classes = repository.live_worker_classes(session, _alive_since(settings))
    for device, gpus in settings.declared_workers.items():
        classes[device] = max(classes.get(device, 0), gpus)
    if not classes:
        return
    served = ", ".join(f"{d} ({g} GPU{'s' * (g != 1)} per worker)" if d == "gpu" else d
                       for d, g in sorted(classes.items()))
    if want.device not in classes:
        raise InvalidInput(f"No worker takes {want.device} jobs: the workers here are {served}. "
                           'Ask for another device, or "auto" to run on any worker.',
                           param="resources.device", code="no_worker_for_device")
    if want.device == "gpu" and want.gpus > classes["gpu"]:
        raise InvalidInput(f"The job asks for {want.gpus} GPUs but no worker holds more than "
                           f"{classes['gpu']}.", param="resources.gpus", code="too_many_gpus")


def _hyperparameters(method: str, given: dict, task: str, auto_batch_size: bool = False) -> dict:
    try:
        return resolve_hyperparameters(method, given, task, auto_batch_size)
    except ValueError as exc:
        name, message = exc.args
        raise InvalidInput(message, param=f"hyperparameters.{name}") from None


def create(session: Session, settings: Settings, tenant: str, req: JobCreate) -> Job:
    """Insert a queued job; its task is sent only once the row has committed."""
    entry = catalog.resolve(settings, req.base_model, session, tenant)
    train = _dataset(session, tenant, req.training_dataset, "training_dataset")
    val = (_dataset(session, tenant, req.validation_dataset, "validation_dataset")
           if req.validation_dataset else None)
    _check_compatible(entry.task, train, val)
    if problem := req.resources.inconsistency():
        raise InvalidInput(problem, param="resources")
    _check_capacity(session, settings, req.resources)
    given = dict(req.hyperparameters)
    if req.resources.device == "gpu" and given.get("processes") in (None, "auto"):
        given["processes"] = req.resources.gpus  # one training process per GPU the job holds
    # batch_size "auto": a real job's pre-flight picks it on the worker; a dry run measures the
    # method's default and reports the largest that fits
    hp = _hyperparameters(req.method, given, entry.task, auto_batch_size=not req.dry_run)
    if req.resources.device == "gpu" and hp["processes"] > req.resources.gpus:
        raise InvalidInput(f"processes ({hp['processes']}) exceeds the job's GPUs "
                           f"({req.resources.gpus}): each process trains on a GPU of its own.",
                           param="hyperparameters.processes", code="too_many_processes")
    teacher, transfer = None, None
    if req.method == "distill":
        teacher = compression.check_teacher(session, tenant, req.teacher, entry.id, train, hp)
    elif req.teacher is not None:
        raise InvalidInput("teacher applies to method distill only.", param="teacher")
    if req.transfer_dataset is not None:
        transfer = _transfer_dataset(session, tenant, req, train)
    if not req.dry_run:  # a dry run neither counts against the cap nor is refused by it
        _check_active_cap(session, settings, tenant)
    return _insert(session, Job(
        id=new_id("job"), tenant_id=tenant, base_model=entry.id, training_dataset_id=train.id,
        dry_run=req.dry_run,
        validation_dataset_id=val.id if val else None, validation_split=req.validation_split,
        method=req.method, hyperparameters=hp, source_model_id=teacher,
        transfer_dataset_id=transfer.id if transfer else None,
        early_stopping=req.early_stopping.model_dump() if req.early_stopping else None,
        select_checkpoint_by=req.select_checkpoint_by, seed=req.seed, suffix=req.suffix,
        user_metadata=req.metadata, resources=req.resources.model_dump()))


def _insert(session: Session, job: Job) -> Job:
    job.progress = {"epoch": 0, "epochs": job.hyperparameters["epochs"], "step": 0,
                    "total_steps": None, "eta_seconds": None}
    return lifecycle.enqueue(session, job)


def create_prune(session: Session, settings: Settings, tenant: str, model_id: str,
                 req: PruneCreate) -> Job:
    """A job that prunes the model and retrains it briefly on the data its own job trained on
    (same datasets, validation split and seed: its validation figures compare like for like)."""
    model, src = compression.check_prune_source(session, tenant, model_id, req.target)
    _dataset(session, tenant, src.training_dataset_id, "model")
    if src.validation_dataset_id:
        _dataset(session, tenant, src.validation_dataset_id, "model")
    targets = ({"prune_channels": req.target.channels} if model.task == "image-classification"
               else {"prune_ffn": req.target.ffn, "prune_heads": req.target.heads})
    # the input size the model was trained at, unless given
    inherited = {k: v for k, v in (src.hyperparameters or {}).items()
                 if k in ("max_length", "image_size")}
    hp = _hyperparameters("prune", {**inherited, **req.hyperparameters,
                                    "epochs": req.retrain_epochs, **targets}, model.task)
    _check_active_cap(session, settings, tenant)
    return _insert(session, Job(
        id=new_id("job"), tenant_id=tenant, base_model=src.base_model,
        training_dataset_id=src.training_dataset_id,
        validation_dataset_id=src.validation_dataset_id, validation_split=src.validation_split,
        method="prune", hyperparameters=hp, source_model_id=model.id, early_stopping=None,
        select_checkpoint_by=src.select_checkpoint_by, seed=src.seed, suffix=req.suffix,
        user_metadata=req.metadata))


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


def queue_of(session: Session | Connection, settings: Settings, job_ids: list[str]) -> dict[str, QueueOut]:
    """{queued job id: its place and the live workers that can take it} (one statement; {} for
    none)."""
    if not job_ids:
        return {}
    state = repository.queue_state(session, job_ids, _alive_since(settings))
    return {job_id: QueueOut(position=n, workers=w) for job_id, (n, w) in state.items()}


def outs(session: Session, settings: Settings, jobs: list[Job]) -> list[JobOut]:
    """The jobs as the API shows them: `queue` filled in for the queued ones."""
    queue = queue_of(session, settings, [j.id for j in jobs if j.status == "queued"])
    return [JobOut.model_validate(j).model_copy(update={"queue": queue.get(j.id)}) for j in jobs]


def out(session: Session, settings: Settings, job: Job) -> JobOut:
    return outs(session, settings, [job])[0]


def _json_outs(conn: Connection, settings: Settings, rows: list[dict]) -> list[dict]:
    """outs() for rows of the Core read path: the same JobOut, as JSON-ready dicts."""
    queue = queue_of(conn, settings, [r["id"] for r in rows if r["status"] == "queued"])
    return [JobOut.model_validate({
        **r, "queue": queue.get(r["id"]),
        "teacher": r["source_model_id"] if r["method"] == "distill" else None,
        "source_model": r["source_model_id"] if r["method"] == "prune" else None,
    }).model_dump(mode="json") for r in rows]


def read_one(settings: Settings, tenant: str, job_id: str) -> dict:
    """GET /v1/jobs/{id} without a session or a commit: out() of the job as a JSON-ready dict."""
    return read_only(lambda conn: _json_outs(conn, settings, [
        owned_row(conn, Job, repository.OUT_COLUMNS, job_id, tenant)])[0])


def read_page(settings: Settings, tenant: str, page: Page, status: str | None) -> dict:
    """GET /v1/jobs without a session or a commit: a ListOf[JobOut] as a JSON-ready dict."""
    def _read(conn: Connection) -> dict:
        rows, has_more = repository.out_rows(conn, tenant, page, status)
        return {"object": "list", "data": _json_outs(conn, settings, rows), "has_more": has_more}

    return read_only(_read)
