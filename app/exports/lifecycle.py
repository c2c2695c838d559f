"""An export's life, in one place: every status change goes through here (the shared lease
mechanics are app.leased).

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲                  │ └────fail──────▶ failed
      │resend            └──expire────────▶ failed   (its worker stopped renewing the lease)
    (message lost: sent again; a second delivery finds it claimed and does nothing)

A worker's writes are fenced by its id: one whose lease lapsed (the export failed meanwhile)
changes nothing. An export is deterministic and takes a minute or two, so a dead worker's export
fails with a clear error rather than starting over; creating it again is one request.
"""
from sqlalchemy.orm import Session

from app import queue
from app.db import after_commit
from app.leased import LeasedRows
from app.models import Export

_rows = LeasedRows(Export, queue.EXPORT_QUEUE,
                   lambda worker: f"The worker building the export ({worker}) stopped "
                                  "answering; create the export again.")
claim, renew, fail = _rows.claim, _rows.renew, _rows.fail
expire_leases, queued_without_message = _rows.expire_leases, _rows.queued_without_message


def enqueue(session: Session, export: Export) -> Export:
    """Insert a new export as queued; its task is sent only once the row has committed."""
    export.status = "queued"
    session.add(export)
    session.flush()
    after_commit(session, lambda: queue.send_export(export.id))
    return export


def succeed(export_id: str, worker_id: str, *, storage_key: str, size_bytes: int, sha256: str,
            evaluation: dict) -> bool:
    """running → succeeded with the stored archive; False when the worker no longer owns it
    (the export was deleted or expired meanwhile: the caller removes the archive)."""
    return _rows.finish(export_id, worker_id, "succeeded", storage_key=storage_key,
                        size_bytes=size_bytes, sha256=sha256, evaluation=evaluation)
