"""What a job needs to train, read from the database in one short unit of work and held as plain
values, so that no session stays open while dataset files are parsed or the model trains."""
import errno
from dataclasses import dataclass
from pathlib import Path

import torch
from botocore.exceptions import ConnectionError as S3ConnectionError, HTTPClientError
from sqlalchemy.exc import DBAPIError, OperationalError

from app.base_models import catalog
from app.config import Settings
from app.datasets import images
from app.datasets.parsing import read_examples
from app.db import session_scope
from app.ml.config import TrainConfig
from app.ml.data import Splits, labelled_splits
from app.ml.recipe import BaseModelSpec, SourceSpec
from app.models import Checkpoint, Dataset, Job, Model
from app.storage import get_storage

TRANSIENT_ERRNOS = {errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.ECONNRESET,
                    errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}


class JobFailed(Exception):
    """A deterministic failure: the job fails at once with this code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class GroupFailed(Exception):
    """A process of a job trained by several died (killed, out of host memory) or lost a peer:
    the whole group stopped; the next attempt resumes from the last resume checkpoint."""


def is_transient(exc: BaseException) -> bool:
    """Errors that may pass: the database, broker or storage being unreachable for a while, a
    process of a multi-process job dying."""
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError | S3ConnectionError
                  | HTTPClientError | GroupFailed):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def resolve_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def loader_workers(settings: Settings) -> int | None:
    """ADAPT_DATALOADER_WORKERS as a number; None for "auto" (app.ml.image_loader decides)."""
    value = settings.dataloader_workers
    return None if value == "auto" else int(value)


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
    # methods distill (the teacher) and prune (the source); its logits_path is set where the
    # job's resume directory is known (workers.training)
    source: SourceSpec | None = None
    dry_run: bool = False  # a pre-flight only (app.ml.preflight): no training, no model


def _source_key(s, job: Job) -> tuple[str, str, str] | None:
    """(kind, checkpoint storage key, model id) of the model the job derives from."""
    if job.source_model_id is None:
        return None
    model = s.get(Model, job.source_model_id)
    ckpt = s.get(Checkpoint, model.checkpoint_id) if model is not None else None
    if ckpt is None:
        what = "teacher" if job.method == "distill" else "source model"
        raise JobFailed("source_model_deleted", f"The job's {what} {job.source_model_id} was "
                        "deleted before it ran.")
    return job.method, ckpt.storage_key, model.id


def read_plan(job_id: str, settings: Settings) -> JobPlan:
    """The job's rows, as plain values (one short transaction); then the dataset files and an
    uploaded base model are fetched from storage (object storage: into the local cache)."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        train = s.get(Dataset, job.training_dataset_id)
        val = s.get(Dataset, job.validation_dataset_id) if job.validation_dataset_id else None
        transfer = (s.get(Dataset, job.transfer_dataset_id) if job.transfer_dataset_id
                    else None)
        if any(d is not None and d.status != "ready" for d in (train, val, transfer)):
            raise JobFailed("dataset_deleted", "The job's dataset was deleted before it ran.")
        if val is not None and val.format == "zip":
            raise JobFailed("dataset_invalid", "A separate validation ZIP is not supported yet: "
                            "use validation_split.")
        entry = catalog.resolve(settings, job.base_model, s, job.tenant_id)
        files = [(d.storage_key, d.format, d.text_column, d.label_column) if d is not None
                 else None for d in (train, val, transfer)]
        tenant, labels, split = job.tenant_id, list(train.labels), job.validation_split
        dry_run = bool(job.dry_run)
        source = _source_key(s, job)
        config = TrainConfig(method=job.method, hyperparameters=job.hyperparameters,
                             seed=job.seed, select_checkpoint_by=job.select_checkpoint_by,
                             early_stopping=job.early_stopping,
                             device=resolve_device(settings.worker_device),
                             labels=list(train.labels), precision=settings.train_precision,
                             loader_workers=loader_workers(settings))
    storage = get_storage()
    data = [DataFile(storage.fetch(f[0]), *f[1:]) if f is not None else None for f in files]
    return JobPlan(
        job_id=job_id, tenant=tenant, labels=labels, train=data[0], validation=data[1],
        validation_split=split, config=config, dry_run=dry_run,
        source=SourceSpec(kind=source[0], checkpoint=storage.fetch(source[1]),
                          model_id=source[2],
                          # distill: its transfer set's texts (labels unread)
                          transfer_texts=tuple(dataset_examples(data[2])[0]) if data[2] else ()
                          ) if source else None,
        base=BaseModelSpec(task=entry.task, path=entry.local_path(),
                           architecture=entry.architecture,
                           # per tenant: a cache hit must not reveal another tenant's data
                           namespace=f"{tenant}/{entry.id}@{entry.revision}"))


def dataset_examples(f: DataFile) -> tuple[list, list[str]]:
    """(inputs, labels): texts for text datasets, archive member names for image ZIPs."""
    if f.format == "zip":
        found = images.inspect_zip(f.path)  # validated at upload: names only, no decoding
        return [m for m, _ in found.members], [label for _, label in found.members]
    return read_examples(f.path, f.format, f.text_column, f.label_column)


def load_splits(plan: JobPlan) -> Splits:
    """Read the dataset files (no database session open) and index the labels; the validation
    set is the job's validation dataset or a seeded stratified split of the training set."""
    train_x, train_y = dataset_examples(plan.train)
    val_x, val_y = dataset_examples(plan.validation) if plan.validation else (None, None)
    try:
        return labelled_splits(plan.labels, train_x, train_y, val_x, val_y,
                               plan.validation_split, plan.config.seed)
    except ValueError as exc:
        raise JobFailed("dataset_invalid", str(exc)) from None
