"""One tenant's slow endpoint can't stall another's deliveries: a slow-loris receiver (one byte a
second, never a whole answer) holds at most its own slots, each of its attempts ends within
ADAPT_WEBHOOK_TIMEOUT_S (the whole request's budget, not a per-read one), and another tenant's
delivery lands at once. Everything listens on 127.0.0.1."""
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import delete

from app.config import get_settings
from app.db import session_scope
from app.ids import new_id
from app.models import WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.webhooks import dispatcher

TIMEOUT_S = 2.0


class SlowLoris:
    """Accepts, then answers "HTTP/1.1 200 OK\\r\\nX-Slow: aaaa…" one byte a second, forever."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        data = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000
        try:
            for i in range(len(data)):
                if self.stopped.wait(1.0 if i else 0.05):
                    break
                conn.sendall(data[i:i + 1])
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopped.set()
        self.sock.close()


class Receiver:
    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_port


@pytest.fixture
def servers():
    slow, fast = SlowLoris(), Receiver()
    yield slow, fast
    slow.close()
    fast.server.shutdown()


def _endpoint(s, tenant: str, url: str) -> WebhookEndpoint:
    hook = WebhookEndpoint(id=new_id("wh"), tenant_id=tenant, url=url, events=["job.failed"],
                           secret="whsec_test")
    s.add(hook)
    s.flush()
    return hook


def _delivery(s, hook: WebhookEndpoint, at) -> str:
    row = WebhookDelivery(id=new_id("whd"), tenant_id=hook.tenant_id, endpoint_id=hook.id,
                          event_id=new_id("evt"), event="job.failed", job_id="job_x",
                          payload={"id": "evt_x", "type": "job.failed"}, status="pending",
                          attempts=0, next_attempt_at=at)
    s.add(row)
    return row.id


def test_a_slow_loris_endpoint_does_not_stall_another_tenants_delivery(servers, monkeypatch):
    slow, fast = servers
    settings = get_settings().model_copy(update={
        "auth": "off", "webhook_allow_private": True, "webhook_timeout_s": TIMEOUT_S,
        "webhook_backoff_s": 3600.0, "webhook_backoff_max_s": 3600.0,
        "webhook_parallel": 8, "webhook_parallel_per_endpoint": 2})
    # Due an hour from now (a running worker leaves them alone); the test dispatches "then".
    at = utcnow() + timedelta(hours=1)
    with session_scope() as s:
        a = _endpoint(s, "isolation-a", f"http://127.0.0.1:{slow.port}/hook")
        b = _endpoint(s, "isolation-b", f"http://127.0.0.1:{fast.port}/hook")
        a_ids = [_delivery(s, a, at) for _ in range(12)]  # more than all the slots, due first
        b_id = _delivery(s, b, at + timedelta(milliseconds=1))

    durations: dict[str, list[float]] = {a.id: [], b.id: []}
    in_flight, most = {a.id: 0, b.id: 0}, {a.id: 0, b.id: 0}
    lock, real_send = threading.Lock(), dispatcher.send

    def timed_send(c, st):
        with lock:
            in_flight[c.endpoint_id] += 1
            most[c.endpoint_id] = max(most[c.endpoint_id], in_flight[c.endpoint_id])
        t0 = time.monotonic()
        try:
            return real_send(c, st)
        finally:
            with lock:
                in_flight[c.endpoint_id] -= 1
                durations[c.endpoint_id].append(time.monotonic() - t0)

    monkeypatch.setattr(dispatcher, "send", timed_send)
    sender = dispatcher.Dispatcher(settings)
    t0 = time.monotonic()
    try:
        b_done = None
        while time.monotonic() - t0 < 2 * TIMEOUT_S + 3:
            sender.dispatch_due(now=at + timedelta(seconds=1))
            with session_scope() as s:
                if b_done is None and s.get(WebhookDelivery, b_id).status == "succeeded":
                    b_done = time.monotonic() - t0
                a_timed_out = [r.last_error for r in s.query(WebhookDelivery).filter(
                    WebhookDelivery.endpoint_id == a.id, WebhookDelivery.attempts > 0,
                    WebhookDelivery.last_error.is_not(None))]
            if b_done is not None and len(a_timed_out) >= 4:
                break
            time.sleep(0.05)
        assert b_done is not None and b_done < 3, f"B's delivery took {b_done}s"
        assert len(a_timed_out) >= 4 and set(a_timed_out) == {"timeout"}, a_timed_out
        assert durations[a.id] and max(durations[a.id]) <= TIMEOUT_S + 1, durations[a.id]
        assert most[a.id] <= 2  # the slow endpoint holds only its own slots
    finally:
        sender.close(wait=False)
        slow.close()
        with session_scope() as s:
            for hook in (a, b):
                s.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook.id))
                s.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == hook.id))
    assert len(a_ids) == 12
