"""A dataset quality report's life, in one place: every status change goes through here (the
shared lease mechanics are app.leased).

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲                  │ └────fail──────▶ failed
      │resend            └──expire────────▶ failed   (its worker stopped renewing the lease)

A report that fails (odd data, a worker that died) leaves the dataset as it is: it stays ready
for jobs, and POST /v1/datasets/{id}/quality asks for a new report.
"""
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app import queue
from app.db import after_commit
from app.leased import LeasedRows
from app.models import QUALITY_FINAL_STATUSES, QualityReport

_rows = LeasedRows(QualityReport, queue.QUALITY_QUEUE,
                   lambda worker: f"The worker computing the report ({worker}) stopped "
                                  "answering; ask for the report again (POST "
                                  "/v1/datasets/{id}/quality).")
claim, renew, fail = _rows.claim, _rows.renew, _rows.fail
expire_leases, queued_without_message = _rows.expire_leases, _rows.queued_without_message


def enqueue(session: Session, report: QualityReport) -> QualityReport:
    """Insert a new report as queued (a new report on the dataset alone replaces its finished
    ones); its task is sent only once the row has committed."""
    if report.against_dataset_id is None:
        session.execute(delete(QualityReport).where(
            QualityReport.dataset_id == report.dataset_id,
            QualityReport.against_dataset_id.is_(None),
            QualityReport.status.in_(QUALITY_FINAL_STATUSES)))
    report.status = "queued"
    session.add(report)
    session.flush()
    after_commit(session, lambda: queue.send_quality(report.id))
    return report


def succeed(report_id: str, worker_id: str, summary: dict, details: dict) -> bool:
    """running → succeeded with the report; False when the worker no longer owns it."""
    return _rows.finish(report_id, worker_id, "succeeded", summary=summary, details=details)
