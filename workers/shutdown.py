"""SIGTERM to a worker: the running job saves a resume checkpoint and goes back to the queue,
within ADAPT_SHUTDOWN_CHECKPOINT_S; past that the process exits anyway (the job's lease then
lapses and it resumes elsewhere from its previous checkpoint). An idle worker exits at once: Celery's
own warm shutdown would first wait out its broker poll (a 2 s drain, and the SQLAlchemy
transport's 1 s sleeps: 4-6 s measured)."""
import logging
import os
import signal
import threading

from celery.worker import state

log = logging.getLogger(__name__)
requested = threading.Event()
busy = threading.Event()  # a task is running (set and cleared by workers.celery_app)


def _give_up(grace_s: float) -> None:
    log.error("SIGTERM: the running job did not checkpoint within %.0fs; exiting anyway", grace_s)
    os._exit(1)  # Celery's warm shutdown would wait for the task for ever


def install(grace_s: float, give_up=_give_up) -> None:
    """Chain our flag in front of Celery's own SIGTERM handler (a warm shutdown, which waits for
    the task: the flag makes the task end within a step instead of at the end of training), and
    bound the wait with a timer. With no task running, Celery's shutdown starts now, from the
    handler, instead of after the broker poll in progress: a message that poll was taking stays
    unacknowledged and is delivered again (or re-sent by the reconciler), as after a crash."""
    previous = signal.getsignal(signal.SIGTERM)

    def _handler(signum, frame):
        log.info("SIGTERM: checkpointing the running job and re-queueing it")
        if not requested.is_set():
            timer = threading.Timer(grace_s, give_up, args=(grace_s,))
            timer.daemon = True
            timer.start()
        requested.set()
        if callable(previous):
            previous(signum, frame)
        if not busy.is_set():
            state.maybe_shutdown()  # raises Celery's WorkerShutdown: nothing to wait for

    signal.signal(signal.SIGTERM, _handler)
