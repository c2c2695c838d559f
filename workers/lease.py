"""The lease a running job holds: a heartbeat thread renews it; every write the worker makes to
the job row is fenced by the attempt number, so a worker that lost its lease changes nothing."""
import logging
import threading
from datetime import timedelta

from sqlalchemy import update

from app.db import session_scope
from app.models import Job
from app.models.base import utcnow

log = logging.getLogger(__name__)
OWNED = ("running", "cancelling")


def fenced(job_id: str, attempt: int):
    """An UPDATE of the job row that only applies while this attempt still owns it."""
    return update(Job).where(Job.id == job_id, Job.attempts == attempt, Job.status.in_(OWNED))


class Lease:
    def __init__(self, job_id: str, attempt: int, lease_s: float):
        self.job_id, self.attempt, self.lease_s = job_id, attempt, lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def start(self) -> "Lease":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def renew(self) -> bool:
        now = utcnow()
        with session_scope() as s:
            owned = s.execute(fenced(self.job_id, self.attempt).values(
                heartbeat_at=now, lease_expires_at=now + timedelta(seconds=self.lease_s))).rowcount
        if not owned:
            self.lost.set()
        return bool(owned)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                if not self.renew():
                    log.warning("job %s: lease lost (attempt %s)", self.job_id, self.attempt)
                    return
            except Exception as exc:  # noqa: BLE001 - the database may be briefly down
                log.warning("job %s: could not renew the lease: %s", self.job_id, exc)
