"""Runs one job: claim the row, train with the recipe, write the outcome onto the row."""
import logging
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
from sqlalchemy import update

from app.base_models import catalog
from app.config import get_settings
from app.datasets.parsing import DatasetInvalid, read_examples
from app.db import session_scope
from app.jobs import events
from app.ml.config import TrainConfig
from app.ml.data import stratified_split
from app.ml.recipe import TextClassificationRecipe, TrainResult
from app.models import Checkpoint, Dataset, Job
from app.models.base import utcnow
from app.models_api.service import create_from_checkpoint
from app.storage import get_storage
from workers.callbacks import LEASE_S, JobRecorder

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A deterministic failure: the job fails at once with this code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def resolve_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def claim(job_id: str, worker_id: str) -> bool:
    """Conditional update queued → running: exactly one delivery of a job gets True."""
    now = utcnow()
    with session_scope() as s:
        claimed = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
            status="running", worker_id=worker_id, attempts=Job.attempts + 1, heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=LEASE_S), started_at=now)).rowcount == 1
        if claimed:
            job = s.get(Job, job_id)
            events.record(s, job_id, f"job started on {worker_id} (attempt {job.attempts})",
                          type="status", data={"status": "running", "attempt": job.attempts})
    return claimed


def finish(job_id: str, status: str, message: str, **values) -> None:
    """Write the final status (only over running/cancelling: a finished job stays finished)."""
    with session_scope() as s:
        done = s.execute(update(Job).where(Job.id == job_id,
                                           Job.status.in_(("running", "cancelling")))
                         .values(status=status, finished_at=utcnow(), lease_expires_at=None,
                                 **values)).rowcount
        if done:
            events.record(s, job_id, message, type="status",
                          level="error" if status == "failed" else "info",
                          data={"status": status, **({"error": values["error"]}
                                                     if "error" in values else {})})


def _load_data(job: Job, train_ds: Dataset, val_ds: Dataset | None):
    storage = get_storage()
    texts, labels = read_examples(storage.local_path(train_ds.storage_key), train_ds.format,
                                  train_ds.text_column, train_ds.label_column)
    names = list(train_ds.labels)
    index = {name: i for i, name in enumerate(names)}
    y = [index[label] for label in labels]
    if val_ds is None:
        tr, va = stratified_split(y, job.validation_split, job.seed)
        return names, [texts[i] for i in tr], [y[i] for i in tr], [texts[i] for i in va], \
            [y[i] for i in va]
    vt, vl = read_examples(storage.local_path(val_ds.storage_key), val_ds.format,
                           val_ds.text_column, val_ds.label_column)
    return names, texts, y, vt, [index[label] for label in vl]


def _train(job_id: str, worker_id: str, work_dir: Path) -> tuple[TrainResult, JobRecorder]:
    settings = get_settings()
    with session_scope() as s:
        job = s.get(Job, job_id)
        train_ds = s.get(Dataset, job.training_dataset_id)
        val_ds = s.get(Dataset, job.validation_dataset_id) if job.validation_dataset_id else None
        if train_ds.status != "ready" or (val_ds is not None and val_ds.status != "ready"):
            raise JobFailed("dataset_deleted", "The job's dataset was deleted before it ran.")
        entry = catalog.resolve(settings, job.base_model)
        names, tx, ty, vx, vy = _load_data(job, train_ds, val_ds)
        cfg = TrainConfig(method=job.method, hyperparameters=job.hyperparameters, seed=job.seed,
                          select_checkpoint_by=job.select_checkpoint_by,
                          early_stopping=job.early_stopping,
                          device=resolve_device(settings.worker_device), labels=names)
        tenant = job.tenant_id
    recorder = JobRecorder(job_id, tenant, worker_id, get_storage(), settings.progress_interval_s)
    recipe = TextClassificationRecipe(cfg, Path(entry.path), work_dir, [recorder])
    try:
        recipe.setup(tx, ty, vx, vy)
        return recipe.train(), recorder
    finally:
        recipe.cleanup()


def _succeed(job_id: str, result: TrainResult, recorder: JobRecorder) -> None:
    with session_scope() as s:
        ckpt = s.get(Checkpoint, recorder.best_checkpoint)
        model = create_from_checkpoint(s, ckpt)
        s.flush()
        model_id, metrics = model.id, ckpt.metrics
    why = " (early stopping)" if result.stop_reason == "early_stopping" else ""
    finish(job_id, "succeeded", f"job succeeded{why}: model {model_id} from checkpoint "
           f"{ckpt.id}", model_id=model_id, metrics=metrics, error=None)


def run_job(job_id: str, worker_id: str) -> None:
    """Claim and run the job; every outcome ends on the job row."""
    if not claim(job_id, worker_id):
        log.info("job %s is not queued (already claimed, cancelled or gone): skipping", job_id)
        return
    work_dir = Path(tempfile.mkdtemp(prefix=f"{job_id}-"))
    try:
        result, recorder = _train(job_id, worker_id, work_dir)
        if result.stop_reason == "cancelled":
            finish(job_id, "cancelled", "job cancelled")
        elif recorder.best_checkpoint is None:
            raise JobFailed("no_checkpoint", "Training ended before the first evaluation.")
        else:
            _succeed(job_id, result, recorder)
    except JobFailed as exc:
        finish(job_id, "failed", f"job failed: {exc.message}",
               error={"code": exc.code, "message": exc.message})
    except DatasetInvalid as exc:
        finish(job_id, "failed", f"job failed: {exc.message}",
               error={"code": "dataset_invalid", "message": exc.message})
    except torch.OutOfMemoryError:
        msg = "Out of memory: lower hyperparameters.batch_size or max_length."
        finish(job_id, "failed", f"job failed: {msg}", error={"code": "out_of_memory",
                                                               "message": msg})
    except Exception as exc:
        log.exception("job %s failed", job_id)
        msg = f"Training failed: {exc.__class__.__name__}: {exc}"[:1000]
        finish(job_id, "failed", f"job failed: {msg}", error={"code": "training_error",
                                                               "message": msg})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
