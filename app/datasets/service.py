"""Datasets: stream the upload to storage while hashing, validate, then record it."""
from functools import partial
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from app import uploads
from app.config import Settings
from app.datasets import fast_csv, images, parsing, quality, repository
from app.db import after_commit, on_rollback
from app.errors import Conflict, InvalidInput, NotFound, UnsupportedType
from app.ids import new_id
from app.ml.vision import decode_image
from app.models import Dataset, QualityReport
from app.storage import Storage
from app.uploads import StagedUpload

TASKS = ("text-classification", "image-classification")


def stage(storage: Storage, settings: Settings, upload: BinaryIO) -> StagedUpload:
    """Stream the upload to a staging file while hashing and taking the byte statistics the fast
    CSV path needs (413 past the size limit)."""
    return uploads.stage(storage, settings.max_upload_bytes, upload, fast_csv.ByteStats())


def create(session: Session, storage: Storage, settings: Settings, tenant: str, *,
           staged: StagedUpload, filename: str, name: str | None, task: str | None,
           text_column: str, label_column: str) -> Dataset:
    """Validate a staged upload and record it; nothing stays behind when it is refused."""
    if staged.size == 0:
        raise InvalidInput("The file is empty.", code="dataset_invalid", param="file")
    with open(staged.path, "rb") as f:
        fmt = parsing.sniff_format(filename, f.read(512))
    task = _check_task(task, fmt)
    summary = _validate(staged, fmt, text_column, label_column, settings)
    ds = Dataset(id=new_id("ds"), tenant_id=tenant, name=name or filename or "dataset",
                 task=task, format=fmt, bytes=staged.size, sha256=staged.sha256,
                 num_examples=summary.num_examples, labels=summary.labels,
                 warnings=parsing.label_warnings(summary.labels) or None,
                 class_counts=dict(summary.class_counts),
                 text_column=text_column if fmt != "zip" else "",
                 label_column=label_column if fmt != "zip" else "", status="ready",
                 storage_key="")
    ds.storage_key = f"datasets/{tenant}/{ds.id}/data.{fmt}"
    storage.put_file(ds.storage_key, staged.path)
    on_rollback(session, lambda: storage.delete(ds.storage_key))
    session.add(ds)
    session.flush()
    if settings.quality_reports:
        quality.enqueue(session, QualityReport(id=new_id("dq"), tenant_id=tenant,
                                               dataset_id=ds.id))
    return ds


def _check_task(task: str | None, fmt: str | None) -> str:
    if fmt is None:
        raise UnsupportedType("Unsupported file type: upload a CSV (with a header row) or JSONL "
                              "file for text classification.", code="unsupported_file_type",
                              param="file")
    inferred = "image-classification" if fmt == "zip" else "text-classification"
    if task and task not in TASKS:
        raise InvalidInput(f"task must be one of {', '.join(TASKS)}.", param="task")
    if task and task != inferred:
        raise InvalidInput(f"A {fmt} file holds a {inferred} dataset, not {task}.", param="task")
    return inferred


def _validate(staged: StagedUpload, fmt: str, text_column: str, label_column: str,
              settings: Settings) -> parsing.Summary:
    """The dataset's summary: a clean CSV through the fast path, anything else (and every
    refusal, so its message names the line) through the row-by-row parser."""
    limits = parsing.Limits(settings.max_rows, settings.max_text_chars, settings.max_labels,
                            settings.max_label_chars)
    path = staged.path
    try:
        if fmt == "zip":
            return _summarize_images(path, settings)
        if fmt == "csv" and (fast := fast_csv.summarize(path, staged.stats, text_column,
                                                         label_column, limits)):
            return fast
        return parsing.summarize(path, fmt, text_column, label_column, limits)
    except parsing.DatasetInvalid as exc:
        raise InvalidInput(exc.message, code="dataset_invalid", param=exc.param,
                           details=exc.details) from None


def _summarize_images(path: Path, settings: Settings) -> parsing.Summary:
    found = images.inspect_zip(path, images.ZipLimits(
        max_members=settings.max_rows, max_total_bytes=settings.max_unzipped_bytes),
        partial(decode_image, max_pixels=settings.max_image_pixels))
    if len(found.class_counts) > settings.max_labels:
        raise parsing.DatasetInvalid(f"The ZIP has more than {settings.max_labels} classes.")
    return parsing.Summary(num_examples=len(found.members), class_counts=found.class_counts)


def get(session: Session, tenant: str, dataset_id: str) -> Dataset:
    return repository.get(session, tenant, dataset_id)


def delete(session: Session, storage: Storage, tenant: str, dataset_id: str) -> Dataset:
    """Soft-delete (finished jobs keep their reference) and remove the stored file."""
    ds = get(session, tenant, dataset_id)
    if job_id := repository.active_job_using(session, ds.id):
        raise Conflict(f"Dataset {ds.id} is used by job {job_id}, which is still queued or "
                       "running; cancel it or wait for it to finish.", code="dataset_in_use")
    ds.status = "deleted"
    key = ds.storage_key
    after_commit(session, lambda: storage.delete(key))
    return ds


def request_quality(session: Session, tenant: str, dataset_id: str,
                    against: str | None) -> QualityReport:
    """Queue a quality report on the dataset alone, or on its duplicates across `against`
    (same task, another dataset); one already queued or running for the pair is answered."""
    ds = get(session, tenant, dataset_id)
    other = repository.get(session, tenant, against, param="against") if against else None
    if other is not None and other.id == ds.id:
        raise InvalidInput("against must name another dataset: the dataset's own report "
                           "already lists its duplicates.", param="against")
    if other is not None and other.task != ds.task:
        raise InvalidInput(f"Dataset {other.id} holds a {other.task} dataset and {ds.id} a "
                           f"{ds.task} one: duplicates are looked for within one task.",
                           param="against")
    if pending := repository.latest_report(session, ds.id, against, unfinished=True):
        return pending
    return quality.enqueue(session, QualityReport(
        id=new_id("dq"), tenant_id=tenant, dataset_id=ds.id,
        against_dataset_id=other.id if other else None))


def quality_report(session: Session, tenant: str, dataset_id: str,
                   against: str | None) -> QualityReport:
    """The newest quality report of the dataset (against another one, or alone), else 404."""
    ds = get(session, tenant, dataset_id)
    if against:
        repository.get(session, tenant, against, param="against")
    report = repository.latest_report(session, ds.id, against)
    if report is None:
        what = f"against {against}" if against else "on it"
        raise NotFound(f"Dataset {ds.id} has no quality report {what}: ask for one with "
                       "POST /v1/datasets/{id}/quality.", param="against" if against else "id")
    return report
