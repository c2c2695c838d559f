"""Thin tasks: take an id, hand it to the runner; the database row is the source of truth."""
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
