"""The worker's maintenance pass, every ADAPT_RECONCILE_INTERVAL_S seconds:
1. jobs whose lease expired (their worker died) go back to the queue (or end `cancelled` when a
   cancel was pending), to be resumed from their last checkpoint by any worker;
2. queued jobs whose broker message is gone (Redis restarted, a message fetched by a worker that
   died on the embedded transport) are sent again. The database, not the broker, knows which jobs
   are owed a run; a duplicate message is harmless because the claim is a conditional update;
3. leftovers of dead processes (staging and work directories) and empty dataset directories are
   removed (app.janitor); the first pass runs at worker start-up."""
import logging
import threading

from app import janitor, queue
from app.config import get_settings
from app.jobs import lifecycle

log = logging.getLogger(__name__)


def reconcile() -> dict:
    """One maintenance pass; returns what it did."""
    requeued = lifecycle.expire_leases()
    lost = lifecycle.queued_without_message()
    for job_id in dict.fromkeys(requeued + lost):
        queue.send_training(job_id)
    if requeued or lost:
        log.info("maintenance: %d expired lease(s) re-queued, %d lost message(s) re-sent",
                 len(requeued), len(lost))
    swept = janitor.sweep(get_settings().data_dir)
    return {"requeued": requeued, "resent": lost, "swept": swept}


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
