"""The worker's heartbeat: its row in `workers`, refreshed every ADAPT_WORKER_HEARTBEAT_S, so a
queued job can say how many workers take jobs (works on every broker: no remote control needed),
and a job no live worker class could take is refused at creation (its device class and GPUs).
The row goes at shutdown; a killed worker's row stops counting after 3 silent intervals and is
removed after an hour."""
import logging
import os
import socket
import threading
from datetime import timedelta

from app.db import session_scope
from app.jobs import repository
from app.models.base import utcnow

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat(threading.Thread):
    def __init__(self, interval_s: float, worker_id: str = WORKER_ID, device: str | None = None,
                 gpus: int | None = None):
        super().__init__(name="adapt-heartbeat", daemon=True)
        self.interval_s, self.worker_id = interval_s, worker_id
        self.device, self.gpus = device, gpus  # its class: which jobs it can take
        self.stopped = threading.Event()

    def beat(self) -> None:
        now = utcnow()
        with session_scope() as s:
            repository.worker_heartbeat(s, self.worker_id, now, now - timedelta(hours=1),
                                        self.device, self.gpus)

    def start(self) -> None:
        """The first beat happens here, before the worker says it is ready: from then on the
        worker counts (a job of its class is accepted, the queue shows it)."""
        self._beat_or_warn()
        super().start()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self._beat_or_warn()

    def _beat_or_warn(self) -> None:
        try:
            self.beat()
        except Exception as exc:  # noqa: BLE001 - the database may be down: try again
            log.warning("worker heartbeat failed: %s", exc)

    def stop(self) -> None:
        """No longer taking jobs: the row goes now, not after 3 silent intervals."""
        self.stopped.set()
        try:
            with session_scope() as s:
                repository.worker_gone(s, self.worker_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not remove the worker row: %s", exc)
