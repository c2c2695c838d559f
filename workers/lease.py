"""The lease a running job holds: a heartbeat thread renews it (app.jobs.lifecycle.renew_lease);
every write the worker makes to the job row is fenced by the attempt number, so a worker that lost
its lease changes nothing."""
import logging
import threading
from collections.abc import Callable

from app.jobs import lifecycle

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, job_id: str, attempt: int | str, lease_s: float,
                 renew: Callable[[str, int | str, float], bool] = lifecycle.renew_lease):
        """`renew(id, owner, lease_s)`: a job's (job id, attempt) by default; an export's lease
        passes app.exports.lifecycle.renew (export id, worker id)."""
        self.job_id, self.attempt, self.lease_s, self._renew = job_id, attempt, lease_s, renew
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
        owned = self._renew(self.job_id, self.attempt, self.lease_s)
        if not owned:
            self.lost.set()
        return owned

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                if not self.renew():
                    log.warning("job %s: lease lost (attempt %s)", self.job_id, self.attempt)
                    return
            except Exception as exc:  # noqa: BLE001 - the database may be briefly down
                log.warning("job %s: could not renew the lease: %s", self.job_id, exc)
