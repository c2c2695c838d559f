"""Sends due deliveries. A delivery is claimed with a conditional UPDATE on its attempt count, so
of two dispatchers that see it only one sends that attempt; the claim hides it for a window
(a dispatcher that dies mid-send delays it, never loses it). 2xx is success; anything else is
retried with exponential backoff until the last attempt, then the delivery is failed.

Each attempt is sent in a pool as soon as it is claimed, within one deadline for the whole
request, and at most webhook_parallel_per_endpoint attempts go to one endpoint at once: a slow
endpoint holds its own slots, never the other tenants' deliveries. The recorded error is a
category (timeout, connection_failed, http_500, destination_refused, …), never the target's
own words: the deliveries endpoint must not become a scanner of the network the worker sees."""
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update

from app.config import Settings
from app.db import session_scope
from app.models import WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.observability import log_context
from app.webhooks import destination, outbox

log = logging.getLogger(__name__)
BATCH = 32        # due deliveries looked at per pass


@dataclass(frozen=True)
class Claimed:
    id: str
    attempt: int
    endpoint_id: str
    job_id: str
    url: str
    secret: str
    payload: dict


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Adapt-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff_s(settings: Settings, attempt: int) -> float:
    """Seconds to wait after failed attempt n: base * 2^(n-1), capped."""
    return min(settings.webhook_backoff_max_s, settings.webhook_backoff_s * 2 ** (attempt - 1))


def _pending(delivery_id: str, attempts: int):
    """An UPDATE that applies only while the delivery is pending at this attempt count."""
    return update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                         WebhookDelivery.status == "pending",
                                         WebhookDelivery.attempts == attempts)


def due(limit: int = BATCH, skip_endpoints=(), now: datetime | None = None
        ) -> list[tuple[str, int, str]]:
    """(id, attempts, endpoint id) of pending deliveries whose time has come, oldest first,
    leaving out the endpoints in skip_endpoints (those with all their slots busy)."""
    query = (select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.endpoint_id)
             .where(WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= (now or utcnow())))
    if skip_endpoints:
        query = query.where(WebhookDelivery.endpoint_id.not_in(list(skip_endpoints)))
    with session_scope() as s:
        return [tuple(r) for r in s.execute(
            query.order_by(WebhookDelivery.next_attempt_at).limit(limit))]


def claim(delivery_id: str, seen: int, settings: Settings,
          now: datetime | None = None) -> Claimed | None:
    """Take attempt seen + 1, or None when another dispatcher took it first (or it is not due
    at `now`)."""
    now = now or utcnow()
    window = timedelta(seconds=2 * settings.webhook_timeout_s + 30)
    with session_scope() as s:
        won = s.execute(_pending(delivery_id, seen).where(WebhookDelivery.next_attempt_at <= now)
                        .values(attempts=seen + 1, next_attempt_at=now + window,
                                last_attempt_at=now)).rowcount == 1
        if not won:
            return None
        row = s.get(WebhookDelivery, delivery_id)
        endpoint = s.get(WebhookEndpoint, row.endpoint_id)
        return Claimed(row.id, seen + 1, row.endpoint_id, row.job_id, endpoint.url, endpoint.secret, row.payload)


def give_up(delivery_id: str, seen: int) -> None:
    """A delivery whose last attempt never reported back (its sender died) fails."""
    with session_scope() as s:
        s.execute(_pending(delivery_id, seen).values(
            status="failed", next_attempt_at=None, completed_at=utcnow(),
            last_error="sender_lost"))  # its sender stopped before an answer


def send(c: Claimed, settings: Settings) -> tuple[int | None, str | None]:
    """POST the event; (status code, None) or (None, the category of failure). The whole
    request (resolution, connection, sending, the answer's headers) has webhook_timeout_s."""
    body = json.dumps(c.payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "adapt-webhooks/1",
               "Adapt-Signature": sign(c.secret, int(time.time()), body),
               "Adapt-Delivery": c.id, "Adapt-Event": c.payload["type"]}
    try:  # streamed: the receiver's response body is never read
        with destination.client(c.url, settings, settings.webhook_timeout_s) as http, \
                http.stream("POST", c.url, content=body, headers=headers) as res:
            return res.status_code, None
    except destination.Refused as exc:
        log.warning("webhook delivery %s refused: %s", c.id, exc)
        return None, "destination_refused"
    except (httpx.TimeoutException, destination.DeadlineExceeded):
        return None, "timeout"
    except (httpx.ConnectError, httpx.NetworkError):
        return None, "connection_failed"
    except httpx.RemoteProtocolError:
        return None, "protocol_error"
    # Anything else (a URL httpx rejects, …) is a failed attempt too.
    except Exception as exc:  # noqa: BLE001
        log.warning("webhook delivery %s failed: %s: %s", c.id, exc.__class__.__name__, exc)
        return None, "send_failed"


def record(c: Claimed, code: int | None, error: str | None, settings: Settings) -> str:
    """Write the attempt's outcome (fenced by its number); returns the delivery's status."""
    now, ok = utcnow(), code is not None and 200 <= code < 300
    status = ("succeeded" if ok else
              "failed" if c.attempt >= settings.webhook_max_attempts else "pending")
    values = {"last_status_code": code,
              "last_error": None if ok else error or f"http_{code}"}
    if status == "pending":
        values["next_attempt_at"] = now + timedelta(seconds=backoff_s(settings, c.attempt))
    else:
        values.update(next_attempt_at=None, completed_at=now)
    with session_scope() as s:
        s.execute(_pending(c.id, c.attempt).values(status=status, **values))
    return status


def deliver(c: Claimed, settings: Settings) -> str:
    """Send one claimed attempt and record what happened."""
    with log_context(job=c.job_id):
        code, error = send(c, settings)
        status = record(c, code, error, settings)
        log.log(logging.INFO if status == "succeeded" else logging.WARNING,
                "webhook delivery %s attempt %d to %s: %s", c.id, c.attempt, c.url,
                code if code is not None else error,
                extra={"delivery_id": c.id, "attempt": c.attempt, "outcome": status})
    return status


class Dispatcher:
    """Claims due deliveries while it has free slots and sends each in its pool at once; a slot
    frees when its attempt ends (and wakes the dispatcher thread to claim more)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = ThreadPoolExecutor(settings.webhook_parallel, "adapt-webhook-send")
        self.lock = threading.Lock()
        self.busy: Counter[str] = Counter()   # attempts in flight per endpoint

    def in_flight(self) -> int:
        with self.lock:
            return sum(self.busy.values())

    def dispatch_due(self, now: datetime | None = None) -> int:
        """One pass: claim what is due and fits, submit it; returns how many were submitted."""
        settings, started = self.settings, 0
        per_endpoint = settings.webhook_parallel_per_endpoint
        with self.lock:
            free = settings.webhook_parallel - sum(self.busy.values())
            full = {e for e, n in self.busy.items() if n >= per_endpoint}
        if free <= 0:
            return 0
        for delivery_id, seen, endpoint_id in due(BATCH, full, now):
            if started >= free:
                break
            with self.lock:
                if self.busy[endpoint_id] >= per_endpoint:
                    continue
            if seen >= settings.webhook_max_attempts:
                give_up(delivery_id, seen)
            elif c := claim(delivery_id, seen, settings, now):
                with self.lock:
                    self.busy[endpoint_id] += 1
                self.pool.submit(self._run, c)
                started += 1
        return started

    def _run(self, c: Claimed) -> None:
        try:
            deliver(c, self.settings)
        except Exception as exc:  # noqa: BLE001 - the database may be down: the claim lapses
            log.warning("webhook delivery %s could not be recorded: %s", c.id, exc)
        finally:
            with self.lock:
                self.busy[c.endpoint_id] -= 1
                if self.busy[c.endpoint_id] <= 0:
                    del self.busy[c.endpoint_id]
            outbox.wakeup.set()

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)
