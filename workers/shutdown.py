"""SIGTERM to a worker: the running job saves a resume checkpoint and goes back to the queue."""
import logging
import signal
import threading

log = logging.getLogger(__name__)
requested = threading.Event()


def install() -> None:
    """Chain our flag in front of Celery's own SIGTERM handler (a warm shutdown, which waits for
    the task: the flag makes the task end within a step instead of at the end of training)."""
    previous = signal.getsignal(signal.SIGTERM)

    def _handler(signum, frame):
        log.info("SIGTERM: checkpointing the running job and re-queueing it")
        requested.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, _handler)
