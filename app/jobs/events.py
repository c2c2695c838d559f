"""The job's event log, written by the API and the worker alike."""
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import serialize_on
from app.models import Job, JobEvent


def record(session: Session, job_id: str, message: str, *, type: str = "message",
           level: str = "info", data: dict[str, Any] | None = None) -> None:
    # The API and the worker may both write a job's events: one writer per job at a time, so the
    # next number is max + 1 (the unique (job_id, seq) constraint backs this up). PostgreSQL: the
    # job row's lock, which status and progress writes take anyway (so no new lock order, no
    # deadlock); SQLite: the database's write lock.
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())
    if session.get_bind().dialect.name == "sqlite":
        serialize_on(session, f"job-events:{job_id}")
    last = session.scalar(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job_id)) or 0
    session.add(JobEvent(job_id=job_id, seq=last + 1, message=message, type=type, level=level,
                         data=data))
