"""Where a webhook may go: with keys on, every spelling of a loopback, private, link-local or
metadata address is refused (at creation when the URL's shape gives it away, else when the
delivery is sent) before any connection is made, whatever ADAPT_WEBHOOK_ALLOW_PRIVATE says; the
connection goes to the address that was checked (no second resolution); and a delivery records a
category of failure, never the target's own words. Every request here goes to 127.0.0.1 or is
refused before it leaves."""
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest
from sqlalchemy import delete

from helpers import keys_required

from app import serve
from app.config import Settings, get_settings
from app.db import session_scope
from app.ids import new_id
from app.keys import service as keys
from app.models import WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.webhooks import destination, dispatcher

REFUSED = ["http://127.0.0.1:9/h", "http://[::1]:9/h", "http://0.0.0.0:9/h", "http://localhost:9/h",
           "http://2130706433:9/h", "http://127.1:9/h", "http://0x7f.0.0.1:9/h",
           "http://[::ffff:127.0.0.1]:9/h", "http://10.0.0.1/h",
           "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/h",
           "http://[fd00:ec2::254]/h", "http://224.0.0.1/h", "http://user:pw@127.0.0.1:9/h",
           "https://user:pw@example.com/h"]


@pytest.fixture(scope="module")
def auth_on():
    with keys_required():
        yield


@pytest.fixture(scope="module")
def acme(auth_on):
    with session_scope() as s:
        _, key = keys.create(s, "webhooks-dest", "webhooks-dest")
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything tries to open a TCP connection."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", refuse)


@pytest.fixture
def delivery():
    """Make a pending delivery to a URL, due in an hour (a running worker leaves it alone), and
    claim its first attempt; rows are deleted after the test."""
    made = []
    at = utcnow() + timedelta(hours=1)

    def _make(url: str) -> dispatcher.Claimed:
        with session_scope() as s:
            hook = WebhookEndpoint(id=new_id("wh"), tenant_id="dest-test", url=url,
                                   events=["job.failed"], secret="whsec_test")
            s.add(hook)
            s.flush()
            row = WebhookDelivery(id=new_id("whd"), tenant_id="dest-test", endpoint_id=hook.id,
                                  event_id="evt_x", event="job.failed", job_id="job_x",
                                  payload={"id": "evt_x", "type": "job.failed"},
                                  status="pending", attempts=0, next_attempt_at=at)
            s.add(row)
        made.append(hook.id)
        c = dispatcher.claim(row.id, 0, get_settings(), now=at)
        assert c is not None
        return c

    yield _make
    with session_scope() as s:
        for hook_id in made:
            s.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook_id))
            s.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == hook_id))


def outcome(delivery_id: str) -> tuple:
    with session_scope() as s:
        row = s.get(WebhookDelivery, delivery_id)
        return row.attempts, row.last_status_code, row.last_error


def keys_on(**extra):
    """Settings with keys on; ADAPT_WEBHOOK_ALLOW_PRIVATE set too, which must not matter."""
    return get_settings().model_copy(update={"auth": "on", "webhook_allow_private": True,
                                             "webhook_backoff_s": 3600.0,
                                             "webhook_backoff_max_s": 3600.0, **extra})


def test_credentials_in_the_url_are_a_422_at_creation(client, acme):
    for url in ("http://user:pw@example.com/h", "https://user@example.com/h",
                "http://user:pw@127.0.0.1:9/h"):
        res = client.post("/v1/webhooks", headers=acme, json={"url": url, "events": ["job.failed"]})
        assert res.status_code == 422, res.text
        assert res.json()["error"]["param"] == "url"
        assert "password" in res.json()["error"]["message"]


@pytest.mark.parametrize("url", REFUSED)
def test_private_destinations_are_refused_before_connecting_with_keys_on(
        url, delivery, no_connections):
    c = delivery(url)
    assert dispatcher.deliver(c, keys_on()) == "pending"
    assert outcome(c.id) == (1, None, "destination_refused")


@pytest.mark.parametrize("address,bad", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("100.127.255.254", True),
    ("0.0.0.0", True), ("224.0.0.1", True), ("240.0.0.1", True), ("255.255.255.255", True),
    ("::1", True), ("::", True), ("fe80::1", True), ("fc00::1", True), ("fd00:ec2::254", True),
    ("::ffff:127.0.0.1", True), ("::ffff:10.0.0.1", True), ("ff02::1", True),
    ("93.184.216.34", False), ("8.8.8.8", False), ("2606:4700:4700::1111", False),
    ("::ffff:8.8.8.8", False)])
def test_address_ranges(address, bad):
    assert destination.forbidden(address) is bad


def test_allow_private_counts_only_with_auth_off():
    base = get_settings()
    assert destination.allow_private(base.model_copy(update={"auth": "off",
                                                             "webhook_allow_private": True}))
    assert not destination.allow_private(base.model_copy(update={"auth": "off",
                                                                 "webhook_allow_private": False}))
    assert not destination.allow_private(base.model_copy(update={"auth": "on",
                                                                 "webhook_allow_private": True}))
    assert not destination.allow_private(base.model_copy(update={
        "auth": "auto", "bind_host": "0.0.0.0", "webhook_allow_private": True}))


def test_a_name_that_resolves_to_any_private_address_is_refused(monkeypatch, no_connections):
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "mixed.example":  # one public address, one private: refused
            return real("93.184.216.34", *args, **kwargs) + real("10.0.0.1", *args, **kwargs)
        raise AssertionError(f"unexpected lookup of {host}")

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(destination.Refused):
        destination.resolve("https://mixed.example/h", keys_on(), 2)


class Receiver:
    def __init__(self, status: int = 200):
        self.hosts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hosts.append(self.headers.get("Host"))
                body = b"internal secret banner"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_port


def test_the_connection_is_pinned_to_the_checked_address(monkeypatch, delivery):
    """A name that resolves to 127.0.0.1 when checked and to 10.0.0.1 afterwards (rebinding):
    the POST still goes to 127.0.0.1, with the name in the Host header."""
    receiver = Receiver()
    real, lookups = socket.getaddrinfo, []

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example":
            lookups.append(host)
            return real("127.0.0.1" if len(lookups) == 1 else "10.0.0.1", *args, **kwargs)
        assert host == "127.0.0.1", f"unexpected lookup of {host}"
        return real(host, *args, **kwargs)

    real_connect = socket.create_connection

    def only_loopback(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"connection to {address}"
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", only_loopback)
    single_user = get_settings().model_copy(update={"auth": "off", "webhook_allow_private": True})
    c = delivery(f"http://rebind.example:{receiver.port}/h")
    try:
        assert dispatcher.deliver(c, single_user) == "succeeded"
    finally:
        receiver.server.shutdown()
    assert lookups == ["rebind.example"]  # resolved once, by the check
    assert receiver.hosts == [f"rebind.example:{receiver.port}"]


def test_errors_are_categories_not_the_targets_words(delivery):
    single_user = get_settings().model_copy(update={
        "auth": "off", "webhook_allow_private": True, "webhook_backoff_s": 3600.0,
        "webhook_backoff_max_s": 3600.0})
    receiver = Receiver(status=500)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    try:
        c = delivery(f"http://127.0.0.1:{receiver.port}/h")
        dispatcher.deliver(c, single_user)
        assert outcome(c.id) == (1, 500, "http_500")
        c = delivery(f"http://127.0.0.1:{port}/h")
        dispatcher.deliver(c, single_user)
        assert outcome(c.id) == (1, None, "connection_failed")
    finally:
        receiver.server.shutdown()


def test_the_deliveries_endpoint_shows_only_the_category(client, acme, no_connections):
    res = client.post("/v1/webhooks", headers=acme,
                      json={"url": "http://169.254.169.254/latest/", "events": ["job.failed"]})
    assert res.status_code == 201, res.text
    hook = res.json()
    at = utcnow() + timedelta(hours=1)
    with session_scope() as s:
        row = WebhookDelivery(id=new_id("whd"), tenant_id="webhooks-dest", endpoint_id=hook["id"],
                              event_id="evt_y", event="job.failed", job_id="job_y",
                              payload={"id": "evt_y", "type": "job.failed"}, status="pending",
                              attempts=0, next_attempt_at=at)
        s.add(row)
    c = dispatcher.claim(row.id, 0, get_settings(), now=at)
    dispatcher.deliver(c, keys_on())
    [d] = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=acme).json()["data"]
    assert (d["attempts"], d["last_status_code"], d["last_error"]) == (1, None,
                                                                      "destination_refused")
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=acme).status_code == 200


def test_the_worker_agrees_with_the_api_on_single_user_mode(monkeypatch):
    """adapt-serve hands its bind host to the worker it starts: with ADAPT_AUTH=auto on
    127.0.0.1 both are single-user (ADAPT_WEBHOOK_ALLOW_PRIVATE counts), on 0.0.0.0 neither."""
    seen = {}
    monkeypatch.delenv("ADAPT_BIND_HOST", raising=False)  # restored after the test
    monkeypatch.setattr(get_settings(), "bind_host", get_settings().bind_host)
    monkeypatch.setattr(get_settings(), "auth", "auto")
    monkeypatch.setattr(serve.uvicorn, "run", lambda *a, **k: None)

    class Worker:
        def __init__(self, *args, **kwargs):
            seen["worker"] = Settings(_env_file=None)  # what the worker reads: the environment

        def send_signal(self, sig):
            pass

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(serve.subprocess, "Popen", Worker)
    monkeypatch.setenv("ADAPT_AUTH", "auto")
    serve.main(["--host", "127.0.0.1", "--predict-in-process"])
    assert destination.allow_private(seen["worker"])
    serve.main(["--host", "0.0.0.0", "--predict-in-process"])
    assert not destination.allow_private(seen["worker"])
