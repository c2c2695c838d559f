"""The worker's maintenance pass, every ADAPT_RECONCILE_INTERVAL_S seconds:
1. jobs whose lease expired (their worker died) go back to the queue (or end `cancelled` when a
   cancel was pending), to be resumed from their last checkpoint by any worker of their class;
2. queued jobs whose broker message is gone (Redis restarted, a message fetched by a worker that
   died on the embedded transport) are sent again, to their own queue (counted queue by queue).
   The database, not the broker, knows which jobs are owed a run; a duplicate message is harmless
   because the claim is a conditional update;
3. leftovers of dead processes (staging and work directories) and empty dataset directories are
   removed (app.janitor); the first pass runs at worker start-up;
4. exports whose worker died (lease lapsed) fail; queued exports whose message is gone are sent
   again (app.exports.lifecycle);
5. the same for dataset quality reports (app.datasets.quality);
6. model selections whose worker died (lease lapsed) fail (app.model_selection.lifecycle)."""
import logging
import threading

from app import janitor, queue
from app.config import get_settings
from app.datasets import quality
from app.exports import lifecycle as exports
from app.jobs import lifecycle
from app.model_selection import lifecycle as selections

log = logging.getLogger(__name__)


def reconcile() -> dict:
    """One maintenance pass; returns what it did."""
    requeued = lifecycle.expire_leases()
    lost = lifecycle.queued_without_message()
    for job_id, name in {**requeued, **lost}.items():
        queue.send_training(job_id, queue=name)
    if requeued or lost:
        log.info("maintenance: %d expired lease(s) re-queued, %d lost message(s) re-sent",
                 len(requeued), len(lost))
    swept = janitor.sweep(get_settings().data_dir)
    return {"requeued": list(requeued), "resent": list(lost), "swept": swept, **_exports(),
            **_quality()}


def _fail_or_resend(kind, send, noun: str) -> tuple[list[str], list[str]]:
    """`kind`'s rows (a lifecycle module) of dead workers fail; queued rows whose message is
    gone are sent again."""
    failed = kind.expire_leases()
    lost = kind.queued_without_message()
    for row_id in lost:
        send(row_id)
    if failed or lost:
        log.info("maintenance: %d %s(s) of dead workers failed, %d lost message(s) re-sent",
                 len(failed), noun, len(lost))
    return failed, lost


def _exports() -> dict:
    failed, lost = _fail_or_resend(exports, queue.send_export, "export")
    return {"exports_failed": failed, "exports_resent": lost,
            "selections_failed": selections.expire_leases()}


def _quality() -> dict:
    failed, lost = _fail_or_resend(quality, queue.send_quality, "quality report")
    return {"quality_failed": failed, "quality_resent": lost}


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
