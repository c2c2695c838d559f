"""The outbox: when a job ends, one pending delivery per matching endpoint is written in the same
transaction as the job's final status, so a crash can lose neither without the other."""
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import after_commit
from app.ids import new_id
from app.jobs.schemas import JobOut
from app.models import Job, WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow

# Set after a commit that wrote deliveries: a dispatcher in this process sends them at once
# instead of at its next poll.
wakeup = threading.Event()


def job_finished(session: Session, job_id: str, status: str) -> int:
    """Queue `job.<status>` for every endpoint of the job's tenant that wants it; returns how
    many. Call inside the transaction that writes the final status."""
    event = f"job.{status}"
    # populate_existing: the status was just written with a bulk UPDATE in this transaction.
    job = session.scalars(select(Job).where(Job.id == job_id)
                          .execution_options(populate_existing=True)).one()
    endpoints = [e for e in session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == job.tenant_id).order_by(WebhookEndpoint.id))
        if event in e.events]
    if not endpoints:
        return 0
    now = utcnow()
    payload = {"id": new_id("evt"), "type": event,
               "created_at": now.isoformat().replace("+00:00", "Z"),
               "data": {"job": JobOut.model_validate(job).model_dump(mode="json")}}
    session.add_all(WebhookDelivery(
        id=new_id("whd"), tenant_id=job.tenant_id, endpoint_id=e.id, event_id=payload["id"],
        event=event, job_id=job.id, payload=payload, status="pending", attempts=0,
        next_attempt_at=now, created_at=now) for e in endpoints)
    after_commit(session, wakeup.set)
    return len(endpoints)
