"""Rows that one worker builds under a lease (an export, a dataset quality report): the status
changes they share, each one conditional UPDATE.

    queued ──claim──▶ running ──finish──▶ succeeded | failed
      ▲                  └──expire──────▶ failed   (its worker stopped renewing the lease)
      │resend (message lost: sent again; a second delivery finds it claimed and does nothing)

A worker's writes are fenced by its id: one whose lease lapsed changes nothing. The work is
deterministic and short, so a dead worker's row fails with a clear error rather than starting
over; asking again is one request. Each kind's lifecycle module names its statuses' meaning.
"""
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update

from app import queue
from app.db import session_scope
from app.models.base import utcnow

RESEND_GRACE_S = 5.0  # a just-created row's message may not be countable yet


class LeasedRows:
    def __init__(self, model, queue_name: str, lost: Callable[[str], str]):
        """`model`: a table with id, status, worker_id, lease_expires_at, started_at,
        finished_at, error; `lost(worker id)`: the error message when that worker died."""
        self.model, self.queue_name, self.lost = model, queue_name, lost

    def _owned(self, row_id: str, worker_id: str):
        m = self.model
        return update(m).where(m.id == row_id, m.worker_id == worker_id, m.status == "running")

    def claim(self, row_id: str, worker_id: str, lease_s: float) -> bool:
        """queued → running: exactly one delivery of the task does the work."""
        m, now = self.model, utcnow()
        with session_scope() as s:
            return s.execute(update(m).where(m.id == row_id, m.status == "queued").values(
                status="running", worker_id=worker_id, started_at=now,
                lease_expires_at=now + timedelta(seconds=lease_s))).rowcount == 1

    def renew(self, row_id: str, worker_id: str, lease_s: float) -> bool:
        """The worker is still at it: extend the lease; False when it no longer owns the row."""
        with session_scope() as s:
            return s.execute(self._owned(row_id, worker_id).values(
                lease_expires_at=utcnow() + timedelta(seconds=lease_s))).rowcount == 1

    def finish(self, row_id: str, worker_id: str, status: str, **values) -> bool:
        """running → succeeded | failed with `values`; False when the worker no longer owns it."""
        with session_scope() as s:
            return s.execute(self._owned(row_id, worker_id).values(
                status=status, finished_at=utcnow(), lease_expires_at=None,
                **values)).rowcount == 1

    def fail(self, row_id: str, worker_id: str, code: str, message: str) -> bool:
        return self.finish(row_id, worker_id, "failed",
                           error={"code": code, "message": message[:1000]})

    def expire_leases(self) -> list[str]:
        """Running rows whose worker stopped renewing the lease (it died) → failed; their ids."""
        m, now = self.model, utcnow()
        with session_scope() as s:
            expired = s.execute(select(m.id, m.worker_id).where(
                m.status == "running", m.lease_expires_at < now)).all()
            failed = []
            for row_id, worker in expired:
                error = {"code": "worker_lost", "message": self.lost(worker)}
                if s.execute(self._owned(row_id, worker).where(m.lease_expires_at < now).values(
                        status="failed", error=error, finished_at=now,
                        lease_expires_at=None)).rowcount == 1:
                    failed.append(row_id)
        return failed

    def queued_without_message(self) -> list[str]:
        """Queued rows to send again when the broker holds fewer messages than are owed (a
        message fetched by a worker that died before claiming it is gone on the embedded
        broker)."""
        m, cutoff = self.model, utcnow() - timedelta(seconds=RESEND_GRACE_S)
        with session_scope() as s:
            owed = s.scalars(select(m.id).where(m.status == "queued",
                                                m.created_at < cutoff)).all()
        if not owed:
            return []
        waiting = queue.queue_size(self.queue_name)  # None: the broker is unreachable anyway
        return [] if waiting is None or waiting >= len(owed) else list(owed)
