"""The outbox: when a job ends, one pending delivery per matching endpoint is written in the same
transaction as the job's final status, so a crash can lose neither without the other."""
import threading

from sqlalchemy.orm import Session

from app.db import after_commit
from app.ids import new_id
from app.models import WebhookDelivery
from app.models.base import utcnow
from app.webhooks import repository

# Set after a commit that wrote deliveries: a dispatcher in this process sends them at once
# instead of at its next poll.
wakeup = threading.Event()


def job_finished(session: Session, tenant: str, job_id: str, status: str, job: dict) -> int:
    """Queue `job.<status>` (with `job`, the job as the API shows it) for every endpoint of the
    tenant that wants it; returns how many. Call inside the transaction that writes the final
    status."""
    event = f"job.{status}"
    endpoints = repository.subscribed(session, tenant, event)
    if not endpoints:
        return 0
    now = utcnow()
    payload = {"id": new_id("evt"), "type": event,
               "created_at": now.isoformat().replace("+00:00", "Z"), "data": {"job": job}}
    session.add_all(WebhookDelivery(
        id=new_id("whd"), tenant_id=tenant, endpoint_id=e.id, event_id=payload["id"],
        event=event, job_id=job_id, payload=payload, status="pending", attempts=0,
        next_attempt_at=now, created_at=now) for e in endpoints)
    after_commit(session, wakeup.set)
    return len(endpoints)
