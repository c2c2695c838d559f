"""The API's side of the queue: it sends tasks by name and never imports the worker code.

Queues by device class. Every worker consumes `training` (jobs that run anywhere: device "auto",
and every message sent before queues had classes) and its class's queue: `training.cpu` for CPU
workers, `training.gpu` for GPU workers, plus `training.gpu.N` (jobs asking for N > 1 GPUs) for
each N up to the GPUs the worker holds. On Redis each queue is a list of the same name."""
import logging
from collections.abc import Iterable
from functools import lru_cache

from celery import Celery
from kombu.exceptions import ChannelError

from app.config import get_settings

log = logging.getLogger(__name__)

TRAIN_TASK = "adapt.train_job"
TRAIN_QUEUE = "training"
DEVICES = ("auto", "cpu", "gpu")


def queue_for(resources: dict | None) -> str:
    """The queue of a job's task, from its resources ({"device", "gpus"}; None = run anywhere)."""
    device, gpus = (resources or {}).get("device", "auto"), (resources or {}).get("gpus", 0)
    if device == "auto":
        return TRAIN_QUEUE
    if device == "gpu" and gpus > 1:
        return f"{TRAIN_QUEUE}.gpu.{gpus}"
    return f"{TRAIN_QUEUE}.{device}"


def worker_queues(device: str, gpus: int) -> list[str]:
    """The queues a worker of this class (device "cpu" or "gpu", holding `gpus` GPUs) consumes."""
    if device == "gpu":
        return [TRAIN_QUEUE, *(queue_for({"device": "gpu", "gpus": n})
                               for n in range(1, max(gpus, 1) + 1))]
    return [TRAIN_QUEUE, queue_for({"device": "cpu"})]


def known_queues(extra: Iterable[str] = ()) -> list[str]:
    """The queues to watch (metrics, the reconciler): the three class queues and `extra`."""
    return list(dict.fromkeys([TRAIN_QUEUE, f"{TRAIN_QUEUE}.cpu", f"{TRAIN_QUEUE}.gpu",
                               *extra]))


EXPORT_TASK = "adapt.build_export"
SELECTION_TASK = "adapt.select_models"
# Its own queue: a count of the training queue's messages stays a count of jobs (the reconciler
# compares it with the queued jobs), and exports are counted the same way.
EXPORT_QUEUE = "exports"
QUALITY_TASK = "adapt.data_quality"
# Dataset quality reports: every worker consumes it; its own queue, counted like exports.
QUALITY_QUEUE = "quality"


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


def _send(task: str, queue: str, object_id: str, countdown: float = 0) -> bool:
    try:
        producer().send_task(task, args=[object_id], queue=queue, countdown=countdown or None,
                             retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row to the reconciler
        log.warning("could not send %s to the broker: %s", object_id, exc)
        return False


def send_training(job_id: str, countdown: float = 0, queue: str = TRAIN_QUEUE) -> bool:
    """Send the job's task to its queue (queue_for); False (logged) when the broker is
    unreachable — the job row stays queued and the worker's reconciler sends it again."""
    return _send(TRAIN_TASK, queue, job_id, countdown)


def send_export(export_id: str) -> bool:
    """Send the export's task; False (logged) when the broker is unreachable — the row stays
    queued and the worker's reconciler sends it again."""
    return _send(EXPORT_TASK, EXPORT_QUEUE, export_id)


def send_quality(report_id: str) -> bool:
    """Send a dataset quality report's task; False (logged) when the broker is unreachable —
    the row stays queued and the worker's reconciler sends it again."""
    return _send(QUALITY_TASK, QUALITY_QUEUE, report_id)


def send_model_selection(selection_id: str) -> bool:
    """Send a model selection's task to the training queue every worker consumes (it runs the
    candidates' frozen models); False (logged) when the broker is unreachable."""
    return _send(SELECTION_TASK, TRAIN_QUEUE, selection_id)


def queue_size(queue: str = TRAIN_QUEUE) -> int | None:
    """Messages waiting in one queue (None when the broker can't say)."""
    return queue_sizes([queue])[queue]


def queue_sizes(queues: list[str]) -> dict[str, int | None]:
    """Messages waiting in each queue, over one connection (None when the broker can't say)."""
    try:
        with producer().connection() as conn:  # a fresh connection: a pooled one may be stale
            conn.ensure_connection(max_retries=3, interval_start=0.2)
            return {name: _waiting(conn, name) for name in queues}
    except Exception as exc:  # noqa: BLE001 - an unknown count means "re-send to be safe"
        log.warning("could not read the queue sizes: %s", exc)
        return dict.fromkeys(queues)


def _waiting(conn, queue: str) -> int:
    with conn.channel() as channel:  # its own: a refused passive declare may close a channel
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError as exc:
            if "NOT_FOUND" in str(exc):  # Redis drops an empty queue's key: nothing waits
                return 0
            raise
