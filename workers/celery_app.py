"""The worker's Celery app, configured from the same Settings as the API."""
import atexit
import gc
import logging

import torch
from celery import Celery
from celery.signals import (setup_logging, task_postrun, task_prerun, worker_ready,
                            worker_shutdown)
from transformers.utils import logging as hf_logging

from app.config import get_settings
from app.observability import configure_logging
from app.queue import TRAIN_QUEUE, broker_options
from app.worker_pool import device_class
from workers import shutdown
from workers.heartbeat import Heartbeat
from workers.maintenance import Maintenance
from workers.webhooks import WebhookDispatcher

# At exit, the interpreter's last collection would walk every object torch and transformers made
# (~1.4 s measured after a SIGTERM): frozen, they are left to the process's end.
atexit.register(gc.freeze)

settings = get_settings()
celery = Celery("adapt", broker=settings.resolved_broker_url, include=["workers.tasks"])
celery.conf.update(
    task_default_queue=TRAIN_QUEUE,
    # A task is acknowledged only when it finishes: a worker that dies leaves it for redelivery,
    # and the database claim makes that redelivery harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_transport_options=broker_options(settings.resolved_broker_url,
                                            settings.visibility_timeout_s),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@setup_logging.connect
def _setup_logging(**_kwargs) -> None:
    """The service's own log format (ADAPT_LOG_FORMAT) instead of Celery's."""
    configure_logging()


@worker_ready.connect
def _on_ready(**_kwargs) -> None:
    """Quiet the progress bars, trap SIGTERM, start the heartbeat, maintenance and webhook
    threads."""
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    shutdown.install(get_settings().shutdown_checkpoint_s)
    _heartbeat.start()
    Maintenance(get_settings().reconcile_interval_s).start()
    WebhookDispatcher().start()


# Its class, as the queues it was started on (app.serve.worker_command) assume.
_device, _gpus = device_class(settings.worker_device, torch.cuda.device_count())
_heartbeat = Heartbeat(settings.worker_heartbeat_s, device=_device, gpus=_gpus)


@task_prerun.connect
def _task_started(**_kwargs) -> None:
    shutdown.busy.set()  # a SIGTERM now checkpoints the task before the worker exits


@task_postrun.connect
def _task_ended(**_kwargs) -> None:
    shutdown.busy.clear()


@worker_shutdown.connect
def _on_shutdown(**_kwargs) -> None:
    _heartbeat.stop()
