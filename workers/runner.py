"""Runs one job: claim the row, train with the recipe (resuming where an earlier attempt left
off), and write the outcome onto the row. Transient errors re-queue with backoff; deterministic
ones fail at once with a clear error."""
import errno
import logging
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from app import queue
from app.base_models import catalog
from app.config import get_settings
from app.datasets import images
from app.datasets.parsing import DatasetInvalid, read_examples
from app.db import session_scope
from app.jobs import events
from app.ml import checkpointing
from app.ml.callbacks import PeriodicSave
from app.ml.feature_cache import FeatureCache
from app.ml.config import TrainConfig
from app.ml.data import Splits, labelled_splits
from app.ml.recipe import BaseModelSpec, TrainResult, build_recipe
from app.models import Checkpoint, Dataset, Job
from app.models.base import utcnow
from app.models_api.service import create_from_checkpoint
from app.observability import log_context
from app.storage import get_storage
from app.webhooks import outbox
from workers.callbacks import JobRecorder
from workers.lease import Lease, fenced

log = logging.getLogger(__name__)
TRANSIENT_ERRNOS = {errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.ECONNRESET,
                    errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}


class JobFailed(Exception):
    """A deterministic failure: the job fails at once with this code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def is_transient(exc: BaseException) -> bool:
    """Errors that may pass: the database, broker or storage being unreachable for a while."""
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def resolve_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def claim(job_id: str, worker_id: str, lease_s: float) -> int | None:
    """Conditional update queued → running: exactly one delivery gets the attempt number."""
    now = utcnow()
    with session_scope() as s:
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
            status="running", worker_id=worker_id, attempts=Job.attempts + 1, heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
            started_at=now)).rowcount == 1
        if not claimed:
            return None
        attempt = s.scalar(select(Job.attempts).where(Job.id == job_id))
        events.record(s, job_id, f"job started on {worker_id} (attempt {attempt})",
                      type="status", data={"status": "running", "attempt": attempt})
    return attempt


def finish(job_id: str, attempt: int, status: str, message: str, **values) -> bool:
    """Write the final status, only while this attempt owns the job (a finished job stays so)."""
    with session_scope() as s:
        done = s.execute(fenced(job_id, attempt).values(
            status=status, finished_at=utcnow(), lease_expires_at=None, **values)).rowcount
        if done:
            events.record(s, job_id, message, type="status",
                          level="error" if status == "failed" else "info",
                          data={"status": status, **({"error": values["error"]}
                                                     if "error" in values else {})})
            outbox.job_finished(s, job_id, status)
    return bool(done)


def requeue(job_id: str, attempt: int, message: str, countdown: float = 0) -> None:
    """Give the job back to the queue (same id; the next attempt resumes from its checkpoint)."""
    with session_scope() as s:
        done = s.execute(fenced(job_id, attempt).where(Job.status == "running").values(
            status="queued", worker_id=None, lease_expires_at=None,
            enqueued_at=utcnow())).rowcount
        if done:
            events.record(s, job_id, message, type="status", data={"status": "queued"})
    if done:
        queue.send_training(job_id, countdown=countdown)


def _examples(ds: Dataset) -> tuple[list, list[str]]:
    """(inputs, labels): texts for text datasets, archive member names for image ZIPs."""
    path = get_storage().local_path(ds.storage_key)
    if ds.format == "zip":
        found = images.inspect_zip(path)  # validated at upload: names only, no decoding
        return [m for m, _ in found.members], [label for _, label in found.members]
    return read_examples(path, ds.format, ds.text_column, ds.label_column)


def _load_data(job: Job, train_ds: Dataset, val_ds: Dataset | None) -> Splits:
    inputs, labels = _examples(train_ds)
    val_inputs = val_labels = None
    if val_ds is not None:
        if val_ds.format == "zip":
            raise JobFailed("dataset_invalid", "A separate validation ZIP is not supported yet: "
                            "use validation_split.")
        val_inputs, val_labels = _examples(val_ds)
    try:
        return labelled_splits(list(train_ds.labels), inputs, labels, val_inputs, val_labels,
                               job.validation_split, job.seed)
    except ValueError as exc:  # e.g. validation labels that training lacks
        raise JobFailed("dataset_invalid", str(exc)) from None


def resume_dir(job: Job) -> Path:
    return get_storage().local_path(f"jobs/{job.tenant_id}/{job.id}/resume")


def _train(job_id: str, lease: Lease, work_dir: Path) -> TrainResult:
    settings = get_settings()
    with session_scope() as s:
        job = s.get(Job, job_id)
        train_ds = s.get(Dataset, job.training_dataset_id)
        val_ds = s.get(Dataset, job.validation_dataset_id) if job.validation_dataset_id else None
        if train_ds.status != "ready" or (val_ds is not None and val_ds.status != "ready"):
            raise JobFailed("dataset_deleted", "The job's dataset was deleted before it ran.")
        entry = catalog.resolve(settings, job.base_model, s, job.tenant_id)
        splits = _load_data(job, train_ds, val_ds)
        cfg = TrainConfig(method=job.method, hyperparameters=job.hyperparameters, seed=job.seed,
                          select_checkpoint_by=job.select_checkpoint_by,
                          early_stopping=job.early_stopping,
                          device=resolve_device(settings.worker_device), labels=splits.labels,
                          precision=settings.train_precision)
        tenant, resume_root = job.tenant_id, resume_dir(job)
        zip_path = get_storage().local_path(train_ds.storage_key)
        base = BaseModelSpec(entry.task, Path(entry.path), entry.architecture,
                             f"{entry.id}@{entry.revision}")
    recorder = JobRecorder(job_id, tenant, lease, get_storage(), settings.progress_interval_s)
    saver = PeriodicSave(settings.checkpoint_every_steps, settings.checkpoint_every_s)
    cache = (FeatureCache(settings.data_dir / "cache" / "features", settings.feature_cache_bytes)
             if settings.feature_cache_bytes else None)  # text `head` jobs use it
    recipe = build_recipe(cfg, base, splits, work_dir=work_dir, callbacks=[saver, recorder],
                          resume_dir=resume_root, keep_last=settings.keep_last_checkpoints,
                          feature_cache=cache, images_zip=zip_path)
    try:
        recipe.setup(resume_from=checkpointing.latest(resume_root))
        if stats := recipe.feature_stats:
            with session_scope() as s:
                events.record(s, job_id, f"encoder features for {stats['examples']} examples: "
                              f"{stats['examples'] - stats['computed']} from the shared cache, "
                              f"{stats['computed']} computed in {stats['seconds']}s", data=stats)
        if recipe.resumed_step is not None:
            with session_scope() as s:
                st = recipe.state
                events.record(s, job_id, f"resumed from step {st.step}/{st.total_steps} "
                              f"(epoch {st.epoch}) on attempt {lease.attempt}",
                              data={"step": st.step, "attempt": lease.attempt})
        return recipe.train()
    finally:
        recipe.cleanup()


def _succeed(job_id: str, attempt: int, result: TrainResult) -> None:
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id,
                                                  Checkpoint.is_best)).first()
        if ckpt is None:
            raise JobFailed("no_checkpoint", "Training ended before the first evaluation.")
        model = create_from_checkpoint(s, ckpt)
        why = " (early stopping)" if result.stop_reason == "early_stopping" else ""
        done = s.execute(fenced(job_id, attempt).values(
            status="succeeded", finished_at=utcnow(), lease_expires_at=None, model_id=model.id,
            metrics=ckpt.metrics, error=None)).rowcount
        if not done:  # the lease was lost meanwhile: the new owner finishes the job
            s.rollback()
            return
        events.record(s, job_id, f"job succeeded{why}: model {model.id} from checkpoint "
                      f"{ckpt.id}", type="status", data={"status": "succeeded"})
        outbox.job_finished(s, job_id, "succeeded")


def _fail(job_id: str, attempt: int, code: str, message: str) -> None:
    finish(job_id, attempt, "failed", f"job failed: {message}",
           error={"code": code, "message": message})


def _outcome(job_id: str, attempt: int, result: TrainResult) -> None:
    reason = result.stop_reason
    if reason == "cancelled":
        finish(job_id, attempt, "cancelled", "job cancelled")
    elif reason == "shutdown":
        requeue(job_id, attempt, f"worker shutting down: checkpoint at step {result.state.step} "
                "saved, job re-queued")
    elif reason == "lease_lost":
        log.warning("job %s attempt %s lost its lease: stopped", job_id, attempt)
    else:
        _succeed(job_id, attempt, result)


def run_job(job_id: str, worker_id: str) -> None:
    """Claim and run the job; every outcome ends on the job row. Lines logged meanwhile carry
    the job id."""
    with log_context(job=job_id):
        _run_job(job_id, worker_id)


def _run_job(job_id: str, worker_id: str) -> None:
    settings = get_settings()
    attempt = claim(job_id, worker_id, settings.lease_s)
    if attempt is None:
        log.info("job %s is not queued (already claimed, cancelled or gone): skipping", job_id)
        return
    log.info("job %s: attempt %d started on %s", job_id, attempt, worker_id)
    if attempt > settings.max_attempts:
        return _fail(job_id, attempt, "too_many_attempts",
                     f"Gave up after {settings.max_attempts} attempts (see the job's events).")
    lease = Lease(job_id, attempt, settings.lease_s).start()
    work_dir = Path(tempfile.mkdtemp(prefix=f"{job_id}-"))
    try:
        _outcome(job_id, attempt, _train(job_id, lease, work_dir))
    except JobFailed as exc:
        _fail(job_id, attempt, exc.code, exc.message)
    except DatasetInvalid as exc:
        _fail(job_id, attempt, "dataset_invalid", exc.message)
    except torch.OutOfMemoryError:
        _fail(job_id, attempt, "out_of_memory",
              "Out of memory: lower hyperparameters.batch_size or max_length.")
    except Exception as exc:
        _handle_unexpected(job_id, attempt, exc, settings.max_attempts)
    finally:
        lease.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def _handle_unexpected(job_id: str, attempt: int, exc: Exception, max_attempts: int) -> None:
    if is_transient(exc) and attempt < max_attempts:
        delay = min(300.0, 5.0 * 2 ** (attempt - 1))
        log.warning("job %s: transient error, retrying in %.0fs: %s", job_id, delay, exc)
        try:
            requeue(job_id, attempt, f"transient error ({exc.__class__.__name__}: "
                    f"{str(exc)[:200]}); retrying in {delay:.0f}s", countdown=delay)
        except Exception:  # noqa: BLE001 - the database is down: the lease expiry re-queues
            log.exception("job %s: could not re-queue; its lease will expire", job_id)
        return
    log.exception("job %s failed", job_id)
    _fail(job_id, attempt, "training_error",
          f"Training failed: {exc.__class__.__name__}: {exc}"[:1000])
