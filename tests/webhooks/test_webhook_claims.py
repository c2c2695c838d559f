"""The dispatcher's claim: of several dispatchers that see one due delivery, exactly one sends
each attempt, and a late answer to an attempt that was taken over changes nothing."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import delete

from app.config import get_settings
from app.db import session_scope
from app.ids import new_id
from app.models import WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.webhooks import dispatcher


def test_one_claim_per_attempt_and_stale_outcomes_are_ignored(environment):
    settings = get_settings()
    # Due an hour from now: the test claims "then"; a running worker's dispatcher leaves it alone.
    due = utcnow() + timedelta(hours=1)
    with session_scope() as s:
        hook = WebhookEndpoint(id=new_id("wh"), tenant_id="claims-test", url="http://127.0.0.1:9/",
                               events=["job.failed"], secret="whsec_test")
        s.add(hook)
        s.flush()
        row = WebhookDelivery(id=new_id("whd"), tenant_id="claims-test", endpoint_id=hook.id,
                              event_id="evt_x", event="job.failed", job_id="job_x",
                              payload={"id": "evt_x", "type": "job.failed"}, status="pending",
                              attempts=0, next_attempt_at=due)
        s.add(row)
    try:
        at = due + timedelta(seconds=1)
        with ThreadPoolExecutor(8) as pool:
            claims = list(pool.map(lambda _: dispatcher.claim(row.id, 0, settings, now=at),
                                   range(8)))
        [first] = [c for c in claims if c is not None]
        assert first.attempt == 1 and first.url == hook.url and first.secret == hook.secret
        # While its claim holds, nobody takes this attempt or the next.
        assert dispatcher.claim(row.id, 0, settings, now=at) is None
        assert dispatcher.claim(row.id, 1, settings, now=at) is None
        # The first sender went silent; once its claim lapses, attempt 2 is someone else's.
        later = at + timedelta(seconds=2 * settings.webhook_timeout_s + 31)
        second = dispatcher.claim(row.id, 1, settings, now=later)
        assert second is not None and second.attempt == 2
        dispatcher.record(first, 200, None, settings)  # the stale attempt's late answer
        with session_scope() as s:
            assert s.get(WebhookDelivery, row.id).status == "pending"
        # A failed attempt waits its backoff (an hour here, so no worker retries it meanwhile).
        slow = settings.model_copy(update={"webhook_backoff_s": 3600.0,
                                           "webhook_backoff_max_s": 3600.0})
        assert dispatcher.record(second, 503, None, slow) == "pending"
        with session_scope() as s:
            got = s.get(WebhookDelivery, row.id)
            assert (got.status, got.attempts, got.last_status_code) == ("pending", 2, 503)
            assert got.last_error == "http_503"  # a category, never the target's words
            assert got.next_attempt_at.replace(tzinfo=None) > (utcnow() + timedelta(minutes=59)
                                                               ).replace(tzinfo=None)
    finally:
        with session_scope() as s:
            s.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook.id))
            s.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == hook.id))
