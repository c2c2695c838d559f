"""The worker's maintenance pass, every ADAPT_RECONCILE_INTERVAL_S seconds:
1. jobs whose lease expired (their worker died) go back to the queue (or end `cancelled` when a
   cancel was pending), to be resumed from their last checkpoint by any worker;
2. queued jobs whose broker message is gone (Redis restarted, a message fetched by a worker that
   died on the embedded transport) are sent again. The database, not the broker, knows which jobs
   are owed a run; a duplicate message is harmless because the claim is a conditional update."""
import logging
import threading
from datetime import timedelta

from sqlalchemy import select, update

from app import queue
from app.db import session_scope
from app.jobs import events
from app.models import Job
from app.models.base import utcnow
from app.webhooks import outbox

log = logging.getLogger(__name__)
RESEND_GRACE_S = 5.0  # a just-created job's message may not be countable yet


def expire_leases() -> list[str]:
    """Re-queue running jobs whose lease lapsed; returns the ids to send."""
    now, requeued = utcnow(), []
    with session_scope() as s:
        expired = s.execute(select(Job.id, Job.status, Job.attempts, Job.worker_id).where(
            Job.status.in_(("running", "cancelling")), Job.lease_expires_at < now)).all()
        for job_id, status, attempt, worker in expired:
            to = "queued" if status == "running" else "cancelled"
            done = s.execute(update(Job).where(Job.id == job_id, Job.attempts == attempt,
                                               Job.status == status).values(
                status=to, worker_id=None, lease_expires_at=None, enqueued_at=now,
                **({"finished_at": now} if to == "cancelled" else {}))).rowcount
            if not done:
                continue
            events.record(s, job_id, f"worker {worker} stopped answering (lease expired on "
                          f"attempt {attempt}); job {'re-queued' if to == 'queued' else to}",
                          level="warning", type="status", data={"status": to})
            if to == "queued":
                requeued.append(job_id)
            else:
                outbox.job_finished(s, job_id, to)
    return requeued


def queued_without_message() -> list[str]:
    """Queued jobs to send again when the broker holds fewer messages than the database owes."""
    cutoff = utcnow() - timedelta(seconds=RESEND_GRACE_S)
    with session_scope() as s:
        owed = s.scalars(select(Job.id).where(Job.status == "queued", Job.enqueued_at < cutoff)
                         .order_by(Job.id)).all()
    if not owed:
        return []
    waiting = queue.queue_size()
    if waiting is not None and waiting >= len(owed):
        return []
    with session_scope() as s:
        s.execute(update(Job).where(Job.id.in_(owed), Job.status == "queued")
                  .values(enqueued_at=utcnow()))
    return list(owed)


def reconcile() -> dict:
    """One maintenance pass; returns what it did."""
    requeued = expire_leases()
    lost = queued_without_message()
    for job_id in dict.fromkeys(requeued + lost):
        queue.send_training(job_id)
    if requeued or lost:
        log.info("maintenance: %d expired lease(s) re-queued, %d lost message(s) re-sent",
                 len(requeued), len(lost))
    return {"requeued": requeued, "resent": lost}


class Maintenance(threading.Thread):
    def __init__(self, interval_s: float):
        super().__init__(name="adapt-maintenance", daemon=True)
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                reconcile()
            except Exception as exc:  # noqa: BLE001 - the database or broker may be down: retry
                log.warning("maintenance pass failed: %s", exc)
            if self.stopped.wait(self.interval_s):
                return
