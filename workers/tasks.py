"""Thin tasks: take an id, hand it to the runner; the database row is the source of truth."""
import logging
import os
import socket

from workers.celery_app import celery
from workers.runner import run_job

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@celery.task(name="adapt.train_job", acks_late=True, ignore_result=True)
def train_job(job_id: str) -> None:
    """Claim the job and train it; a duplicate delivery finds it claimed and does nothing."""
    run_job(job_id, WORKER_ID)
