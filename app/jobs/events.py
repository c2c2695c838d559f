"""The job's event log, written by the API and the worker alike."""
from typing import Any

from sqlalchemy.orm import Session

from app.models import JobEvent


def record(session: Session, job_id: str, message: str, *, type: str = "message",
           level: str = "info", data: dict[str, Any] | None = None) -> None:
    session.add(JobEvent(job_id=job_id, message=message, type=type, level=level, data=data))
