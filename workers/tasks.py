"""Thin tasks: take an id, hand it to the runner; the database row is the source of truth.

Exports, quality reports and model selection import their runners when their first task comes
(onnx, scikit-learn, scipy: ~1.3 s of the worker's 6 s start, measured), so that a worker
restarted after a crash is back at its training jobs sooner."""
import logging
import os
import socket

from celery.exceptions import Reject

from workers import shutdown
from workers.celery_app import celery
from workers.runner import run_job

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@celery.task(name="adapt.train_job", acks_late=True, ignore_result=True)
def train_job(job_id: str) -> None:
    """Claim the job and train it; a duplicate delivery finds it claimed and does nothing."""
    if shutdown.requested.is_set():  # a worker on its way out takes no new job
        raise Reject("worker shutting down", requeue=True)
    run_job(job_id, WORKER_ID)


@celery.task(name="adapt.build_export", acks_late=True, ignore_result=True)
def build_export(export_id: str) -> None:
    """Claim the export and build it; a duplicate delivery finds it claimed and does nothing."""
    if shutdown.requested.is_set():
        raise Reject("worker shutting down", requeue=True)
    from workers.exports import run_export  # deferred: the worker starts sooner (module doc)

    run_export(export_id, WORKER_ID)


@celery.task(name="adapt.data_quality", acks_late=True, ignore_result=True)
def data_quality(report_id: str) -> None:
    """Claim the dataset quality report and compute it; a duplicate delivery does nothing."""
    if shutdown.requested.is_set():
        raise Reject("worker shutting down", requeue=True)
    from workers.quality import run_quality  # deferred: the worker starts sooner (module doc)

    run_quality(report_id, WORKER_ID)


@celery.task(name="adapt.select_models", acks_late=True, ignore_result=True)
def select_models(selection_id: str) -> None:
    """Claim the model selection and rank its candidates; a duplicate delivery does nothing."""
    if shutdown.requested.is_set():
        raise Reject("worker shutting down", requeue=True)
    from workers.model_selection import run_selection  # deferred: the worker starts sooner (module doc)

    run_selection(selection_id, WORKER_ID)
