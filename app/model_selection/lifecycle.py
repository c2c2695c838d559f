"""A model selection's life, in one place: every status change is one conditional UPDATE here.

    queued ──claim──▶ running ──succeed──▶ succeeded
                         │ └────fail──────▶ failed
                         └──expire────────▶ failed   (its worker stopped renewing the lease)

A worker's writes are fenced by its id; a selection is deterministic and short, so a dead
worker's selection fails with a clear error rather than starting over.
"""
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import queue
from app.db import after_commit, session_scope
from app.models import ModelSelection
from app.models.base import utcnow


def enqueue(session: Session, selection: ModelSelection) -> ModelSelection:
    """Insert it as queued; its task is sent only once the row has committed."""
    selection.status = "queued"
    session.add(selection)
    session.flush()
    after_commit(session, lambda: queue.send_model_selection(selection.id))
    return selection


def _owned(selection_id: str, worker_id: str):
    return update(ModelSelection).where(ModelSelection.id == selection_id,
                                        ModelSelection.worker_id == worker_id,
                                        ModelSelection.status == "running")


def claim(selection_id: str, worker_id: str, lease_s: float) -> bool:
    """queued → running: exactly one delivery computes it."""
    now = utcnow()
    with session_scope() as s:
        return s.execute(update(ModelSelection).where(
            ModelSelection.id == selection_id, ModelSelection.status == "queued").values(
            status="running", worker_id=worker_id, started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s))).rowcount == 1


def renew(selection_id: str, worker_id: str, lease_s: float) -> bool:
    with session_scope() as s:
        return s.execute(_owned(selection_id, worker_id).values(
            lease_expires_at=utcnow() + timedelta(seconds=lease_s))).rowcount == 1


def succeed(selection_id: str, worker_id: str, results: list[dict]) -> bool:
    with session_scope() as s:
        return s.execute(_owned(selection_id, worker_id).values(
            status="succeeded", results=results, finished_at=utcnow(),
            lease_expires_at=None)).rowcount == 1


def fail(selection_id: str, worker_id: str, code: str, message: str) -> bool:
    with session_scope() as s:
        return s.execute(_owned(selection_id, worker_id).values(
            status="failed", error={"code": code, "message": message[:1000]},
            finished_at=utcnow(), lease_expires_at=None)).rowcount == 1


def expire_leases() -> list[str]:
    """Running selections whose worker stopped renewing the lease (it died) → failed."""
    now = utcnow()
    with session_scope() as s:
        expired = s.execute(select(ModelSelection.id, ModelSelection.worker_id).where(
            ModelSelection.status == "running", ModelSelection.lease_expires_at < now)).all()
        failed = []
        for selection_id, worker in expired:
            if s.execute(_owned(selection_id, worker).where(
                    ModelSelection.lease_expires_at < now).values(
                    status="failed", finished_at=now, lease_expires_at=None,
                    error={"code": "worker_lost", "message": f"The worker computing it ({worker}) "
                           "stopped answering; create the model selection again."})
                    ).rowcount == 1:
                failed.append(selection_id)
    return failed
