"""What a job needs to train, read from the database in one short unit of work and held as plain
values, so that no session stays open while dataset files are parsed or the model trains."""
import errno
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy.exc import DBAPIError, OperationalError

from app.base_models import catalog
from app.config import Settings
from app.datasets import images
from app.datasets.parsing import read_examples
from app.db import session_scope
from app.ml.config import TrainConfig
from app.ml.data import Splits, labelled_splits
from app.ml.recipe import BaseModelSpec
from app.models import Dataset, Job
from app.storage import get_storage

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


@dataclass(frozen=True)
class DataFile:
    """A dataset's stored file and how to read it."""
    path: Path
    format: str
    text_column: str
    label_column: str


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    tenant: str
    config: TrainConfig
    base: BaseModelSpec
    labels: list[str]             # the training dataset's label names, in index order
    train: DataFile
    validation: DataFile | None
    validation_split: float
    resume_dir: Path


def read_plan(job_id: str, settings: Settings) -> JobPlan:
    """The job's rows, as plain values (one short transaction)."""
    storage = get_storage()
    with session_scope() as s:
        job = s.get(Job, job_id)
        train = s.get(Dataset, job.training_dataset_id)
        val = s.get(Dataset, job.validation_dataset_id) if job.validation_dataset_id else None
        if train.status != "ready" or (val is not None and val.status != "ready"):
            raise JobFailed("dataset_deleted", "The job's dataset was deleted before it ran.")
        if val is not None and val.format == "zip":
            raise JobFailed("dataset_invalid", "A separate validation ZIP is not supported yet: "
                            "use validation_split.")
        entry = catalog.resolve(settings, job.base_model, s, job.tenant_id)
        files = [DataFile(storage.local_path(d.storage_key), d.format, d.text_column,
                          d.label_column) if d is not None else None for d in (train, val)]
        return JobPlan(
            job_id=job.id, tenant=job.tenant_id, labels=list(train.labels), train=files[0],
            validation=files[1], validation_split=job.validation_split,
            resume_dir=storage.local_path(f"jobs/{job.tenant_id}/{job.id}/resume"),
            base=BaseModelSpec(task=entry.task, path=Path(entry.path),
                               architecture=entry.architecture,
                               # per tenant: a cache hit must not reveal another tenant's data
                               namespace=f"{job.tenant_id}/{entry.id}@{entry.revision}"),
            config=TrainConfig(method=job.method, hyperparameters=job.hyperparameters,
                               seed=job.seed, select_checkpoint_by=job.select_checkpoint_by,
                               early_stopping=job.early_stopping,
                               device=resolve_device(settings.worker_device),
                               labels=list(train.labels), precision=settings.train_precision))


def _examples(f: DataFile) -> tuple[list, list[str]]:
    """(inputs, labels): texts for text datasets, archive member names for image ZIPs."""
    if f.format == "zip":
        found = images.inspect_zip(f.path)  # validated at upload: names only, no decoding
        return [m for m, _ in found.members], [label for _, label in found.members]
    return read_examples(f.path, f.format, f.text_column, f.label_column)


def load_splits(plan: JobPlan) -> Splits:
    """Read the dataset files (no database session open) and index the labels; the validation
    set is the job's validation dataset or a seeded stratified split of the training set."""
    train_x, train_y = _examples(plan.train)
    val_x, val_y = _examples(plan.validation) if plan.validation else (None, None)
    try:
        return labelled_splits(plan.labels, train_x, train_y, val_x, val_y,
                               plan.validation_split, plan.config.seed)
    except ValueError as exc:
        raise JobFailed("dataset_invalid", str(exc)) from None
