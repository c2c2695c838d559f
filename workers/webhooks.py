"""The worker's webhook dispatcher thread: sends due deliveries, at once when a job this process
finished wrote some, else every ADAPT_WEBHOOK_POLL_S seconds."""
import logging
import threading

from app.config import get_settings
from app.webhooks import dispatcher, outbox

log = logging.getLogger(__name__)


class WebhookDispatcher(threading.Thread):
    def __init__(self):
        super().__init__(name="adapt-webhooks", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        settings = get_settings()
        while not self.stopped.is_set():
            outbox.wakeup.clear()  # a wake-up set while sending is kept for the next wait
            try:
                sent = dispatcher.dispatch_due(settings)
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again later
                log.warning("webhook dispatch pass failed: %s", exc)
                sent = 0
            if not sent:
                outbox.wakeup.wait(settings.webhook_poll_s)
