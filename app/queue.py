"""The API's side of the queue: it sends tasks by name and never imports the worker code."""
import logging
from functools import lru_cache

from celery import Celery
from kombu.exceptions import ChannelError

from app.config import get_settings

log = logging.getLogger(__name__)

TRAIN_TASK = "adapt.train_job"
TRAIN_QUEUE = "training"


def broker_options(url: str, visibility_timeout_s: int) -> dict:
    """Transport options for the broker URL."""
    if url.startswith("sqla+"):
        # The SQLAlchemy transport hands its options to create_engine; it has no visibility
        # timeout (a fetched message is never redelivered), so the database reconciler is the net.
        return {}
    # Redis redelivers an unacknowledged task after the visibility timeout: it must exceed the
    # longest job, or a second worker would start the same job (the claim stops it anyway).
    return {"visibility_timeout": visibility_timeout_s}


@lru_cache
def producer() -> Celery:
    settings = get_settings()
    app = Celery("adapt-api", broker=settings.resolved_broker_url)
    app.conf.update(broker_transport_options=broker_options(settings.resolved_broker_url,
                                                                    settings.visibility_timeout_s),
                    broker_connection_retry_on_startup=True, task_default_queue=TRAIN_QUEUE)
    return app


def close_producer() -> None:
    """Release the producer's broker connections; the next producer() makes a new one."""
    if producer.cache_info().currsize:
        producer().close()
        producer.cache_clear()


def send_training(job_id: str, countdown: float = 0) -> bool:
    """Send the job's task; False (logged) when the broker is unreachable — the job row stays
    queued and the worker's reconciler sends it again."""
    try:
        producer().send_task(TRAIN_TASK, args=[job_id], queue=TRAIN_QUEUE,
                             countdown=countdown or None,
                             retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row to the reconciler
        log.warning("could not send job %s to the broker: %s", job_id, exc)
        return False


def queue_size() -> int | None:
    """Messages waiting in the training queue (None when the broker can't say)."""
    try:
        with producer().connection() as conn:  # a fresh connection: a pooled one may be stale
            conn.ensure_connection(max_retries=3, interval_start=0.2)
            try:
                return conn.default_channel.queue_declare(queue=TRAIN_QUEUE,
                                                          passive=True).message_count
            except ChannelError as exc:
                if "NOT_FOUND" in str(exc):  # Redis drops an empty queue's key: nothing waits
                    return 0
                raise
    except Exception as exc:  # noqa: BLE001 - an unknown count means "re-send to be safe"
        log.warning("could not read the queue size: %s", exc)
        return None
