"""Sends due deliveries. A delivery is claimed with a conditional UPDATE on its attempt count, so
of two dispatchers that see it only one sends that attempt; the claim hides it for a window
(a dispatcher that dies mid-send delays it, never loses it). 2xx is success; anything else is
retried with exponential backoff until the last attempt, then the delivery is failed."""
import hashlib
import hmac
import json
import logging
import time
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

log = logging.getLogger(__name__)
BATCH = 32        # deliveries claimed per pass
PARALLEL = 8      # sent at once: a slow endpoint holds up the others for one timeout at most


@dataclass(frozen=True)
class Claimed:
    id: str
    attempt: int
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


def due(limit: int = BATCH) -> list[tuple[str, int]]:
    """(id, attempts) of pending deliveries whose time has come, oldest first."""
    with session_scope() as s:
        return [tuple(r) for r in s.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
            .order_by(WebhookDelivery.next_attempt_at).limit(limit))]


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
        return Claimed(row.id, seen + 1, row.job_id, endpoint.url, endpoint.secret, row.payload)


def give_up(delivery_id: str, seen: int) -> None:
    """A delivery whose last attempt never reported back (its sender died) fails."""
    with session_scope() as s:
        s.execute(_pending(delivery_id, seen).values(
            status="failed", next_attempt_at=None, completed_at=utcnow(),
            last_error="the last attempt's sender stopped before it got an answer"))


def send(c: Claimed, timeout_s: float) -> tuple[int | None, str | None]:
    """POST the event; (status code, None) or (None, why it could not be sent)."""
    body = json.dumps(c.payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "adapt-webhooks/1",
               "Adapt-Signature": sign(c.secret, int(time.time()), body),
               "Adapt-Delivery": c.id, "Adapt-Event": c.payload["type"]}
    try:  # streamed: the receiver's response body is never read
        with httpx.stream("POST", c.url, content=body, headers=headers, timeout=timeout_s,
                          follow_redirects=False) as res:
            return res.status_code, None
    # Any failure to send (DNS, refused, timeout, a URL httpx rejects) is a failed attempt.
    except Exception as exc:  # noqa: BLE001
        return None, f"{exc.__class__.__name__}: {exc}"[:500]


def record(c: Claimed, code: int | None, error: str | None, settings: Settings) -> str:
    """Write the attempt's outcome (fenced by its number); returns the delivery's status."""
    now, ok = utcnow(), code is not None and 200 <= code < 300
    status = ("succeeded" if ok else
              "failed" if c.attempt >= settings.webhook_max_attempts else "pending")
    values = {"last_status_code": code,
              "last_error": None if ok else error or f"HTTP {code} (expected 2xx)"}
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
        code, error = send(c, settings.webhook_timeout_s)
        status = record(c, code, error, settings)
        log.log(logging.INFO if status == "succeeded" else logging.WARNING,
                "webhook delivery %s attempt %d to %s: %s", c.id, c.attempt, c.url,
                code if code is not None else error,
                extra={"delivery_id": c.id, "attempt": c.attempt, "outcome": status})
    return status


def dispatch_due(settings: Settings) -> int:
    """One pass: claim what is due and send it; returns how many attempts were made."""
    claims = []
    for delivery_id, seen in due():
        if seen >= settings.webhook_max_attempts:
            give_up(delivery_id, seen)
        elif c := claim(delivery_id, seen, settings):
            claims.append(c)
    if claims:
        with ThreadPoolExecutor(min(PARALLEL, len(claims)), "adapt-webhook-send") as pool:
            list(pool.map(lambda c: deliver(c, settings), claims))
    return len(claims)
