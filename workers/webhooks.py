"""The worker's webhook dispatcher thread: claims due deliveries into the dispatcher's pool, at
once when a job this process finished wrote some or a send ended, else every ADAPT_WEBHOOK_POLL_S
seconds."""
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
        sender = dispatcher.Dispatcher(settings)
        if settings.webhook_allow_private and settings.auth_enabled:
            log.warning("ADAPT_WEBHOOK_ALLOW_PRIVATE is ignored: auth is on, so webhooks to "
                        "loopback and private addresses are refused")
        while not self.stopped.is_set():
            outbox.wakeup.clear()  # a wake-up set while sending is kept for the next wait
            try:
                sent = sender.dispatch_due()
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again later
                log.warning("webhook dispatch pass failed: %s", exc)
                sent = 0
            if not sent:
                outbox.wakeup.wait(settings.webhook_poll_s)
        sender.close(wait=False)
