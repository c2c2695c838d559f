"""Webhooks end to end: endpoints per tenant, real jobs through the real worker, signed
deliveries to a local receiver, retries with backoff, cancellation, isolation, bad input. The
tenants have keys (auth on), so other tests' jobs and webhooks (the `default` tenant's) never mix
with these."""
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import keys_required, new_key, toy_csv, wait_for_job

from app.config import get_settings
from app.webhooks.dispatcher import sign

pytestmark = pytest.mark.usefixtures("worker")


class Receiver:
    """Records every POST; path /fail-N answers 500 to its first N requests, /broken always."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "body": body, "headers": {
                        k.lower(): v for k, v in self.headers.items()}})
                    seen = sum(r["path"] == self.path for r in receiver.requests)
                fail = re.match(r"^/fail-(\d+)", self.path)
                ok = not self.path.startswith("/broken") and (not fail or seen > int(fail[1]))
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def auth_on():
    with keys_required():
        yield


def _key(tenant: str) -> dict:
    return new_key(tenant, name="webhooks")[1]


@pytest.fixture(scope="module")
def acme(auth_on):
    return _key("webhooks-acme")


@pytest.fixture(scope="module")
def globex(auth_on):
    return _key("webhooks-globex")


@pytest.fixture(scope="module")
def verify():
    """The signature check exactly as README.md documents it (its code block is run here)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "def verify(" in block)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own README
    return namespace["verify"]


class As:
    """The test client with a tenant's key on every GET (for wait_for_job)."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def get(self, path, **kw):
        return self.client.get(path, headers=self.headers, **kw)


def wait_until(fn, timeout: float = 60, what: str = ""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := fn():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def dataset(client, acme):
    res = client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(40))}, headers=acme)
    assert res.status_code == 201, res.text
    return res.json()["id"]


@pytest.fixture
def hooks(client, acme, receiver):
    """Create acme's webhooks to receiver paths; they are deleted after the test."""
    made = []

    def _create(path: str, events: list[str]) -> dict:
        res = client.post("/v1/webhooks", headers=acme,
                          json={"url": receiver.url(path), "events": events})
        assert res.status_code == 201, res.text
        made.append(res.json())
        return made[-1]

    yield _create
    for hook in made:
        client.delete(f"/v1/webhooks/{hook['id']}", headers=acme)


def start_job(client, headers, dataset, epochs: int = 1) -> str:
    res = client.post("/v1/jobs", headers=headers, json={
        "base_model": "tiny-bert", "training_dataset": dataset,
        "hyperparameters": {"epochs": epochs, "batch_size": 8}})
    assert res.status_code == 201, res.text
    return res.json()["id"]


def deliveries(client, headers, hook) -> list[dict]:
    res = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=headers)
    assert res.status_code == 200, res.text
    return res.json()["data"]


def settled(client, headers, hook) -> dict:
    """The hook's one delivery, once it is no longer pending."""
    return wait_until(lambda: next((d for d in deliveries(client, headers, hook)
                                    if d["status"] != "pending"), None), what=hook["url"])


def test_a_succeeded_job_is_sent_once_signed_and_retried_until_it_lands(
        client, acme, dataset, receiver, verify, hooks, worker):
    ok = hooks("/ok", ["job.succeeded"])
    flaky = hooks("/fail-2", ["job.succeeded", "job.failed"])
    broken = hooks("/broken", ["job.succeeded"])
    failed_only = hooks("/failed-only", ["job.failed"])
    job = wait_for_job(As(client, acme), start_job(client, acme, dataset))
    assert job["status"] == "succeeded", job["error"]

    # The outbox: each delivery was committed with the job's final status, so it is there as
    # soon as the job reads succeeded; an endpoint that doesn't want the event gets none.
    for hook in (ok, flaky, broken):
        [d] = deliveries(client, acme, hook)
        assert (d["job"], d["event"], d["webhook"]) == (job["id"], "job.succeeded", hook["id"])
    assert deliveries(client, acme, failed_only) == []

    d = settled(client, acme, ok)
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("succeeded", 1, 200)
    [req] = receiver.at("/ok")  # exactly one request
    event = json.loads(req["body"])
    assert event["id"] == d["event_id"] and event["type"] == "job.succeeded"
    assert event["data"]["job"]["id"] == job["id"]
    assert event["data"]["job"]["status"] == "succeeded"
    assert event["data"]["job"]["model"] == job["model"]
    assert req["headers"]["adapt-delivery"] == d["id"]
    signature = req["headers"]["adapt-signature"]
    assert verify(ok["secret"], req["body"], signature)
    assert not verify(ok["secret"], req["body"] + b" ", signature)  # a changed body
    assert not verify(flaky["secret"], req["body"], signature)      # another endpoint's secret
    assert not verify(ok["secret"], req["body"], sign(ok["secret"], int(time.time()) - 301,
                                                      req["body"]))  # a replay, 5 min later

    d = settled(client, acme, flaky)
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("succeeded", 3, 200)
    sent = receiver.at("/fail-2")
    assert len(sent) == 3  # 500, 500, then 200: the same delivery and event each time
    assert {r["headers"]["adapt-delivery"] for r in sent} == {d["id"]}
    assert {json.loads(r["body"])["id"] for r in sent} == {d["event_id"]}
    assert all(verify(flaky["secret"], r["body"], r["headers"]["adapt-signature"]) for r in sent)

    d = settled(client, acme, broken)
    max_attempts = get_settings().webhook_max_attempts
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("failed", max_attempts, 500)
    assert "500" in d["last_error"] and d["next_attempt_at"] is None and d["completed_at"]
    assert len(receiver.at("/broken")) == max_attempts

    # The worker logged each attempt with the job's id in context.
    log = worker.log_path.read_text()
    assert any(f"webhook delivery {d['id']}" in line and f"job_id={job['id']}" in line
               for line in log.splitlines())


def test_a_cancelled_job_sends_job_cancelled(client, acme, dataset, receiver, verify, hooks):
    hook = hooks("/cancelled", ["job.cancelled"])
    job_id = start_job(client, acme, dataset, epochs=50)
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=acme).status_code == 200
    job = wait_for_job(As(client, acme), job_id)
    assert job["status"] == "cancelled"
    d = settled(client, acme, hook)
    assert (d["status"], d["event"], d["job"]) == ("succeeded", "job.cancelled", job_id)
    [req] = receiver.at("/cancelled")
    event = json.loads(req["body"])
    assert event["type"] == "job.cancelled" and event["data"]["job"]["status"] == "cancelled"
    assert verify(hook["secret"], req["body"], req["headers"]["adapt-signature"])


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "example.com/hook", "http://",
                                 "https://exa mple.com/", "http://example.com:99999/",
                                 "javascript:alert(1)", "x" * 2100])
def test_a_url_that_is_not_http_is_a_clear_422(client, acme, url):
    res = client.post("/v1/webhooks", headers=acme, json={"url": url, "events": ["job.failed"]})
    assert res.status_code == 422, res.text
    assert res.json()["error"]["param"] == "url"


def test_events_must_be_a_non_empty_subset_of_the_job_endings(client, acme):
    for events in ([], ["job.started"], "job.failed"):
        res = client.post("/v1/webhooks", headers=acme,
                          json={"url": "https://example.com/h", "events": events})
        assert res.status_code == 422, (events, res.text)
        assert res.json()["error"]["param"].startswith("events")


def test_webhooks_belong_to_one_tenant(client, acme, globex):
    res = client.post("/v1/webhooks", headers=acme, json={
        "url": "https://example.com/h", "events": ["job.failed", "job.failed"],
        "description": "ops pager"})
    assert res.status_code == 201, res.text
    hook = res.json()
    assert hook["id"].startswith("wh_") and hook["secret"].startswith("whsec_")
    assert hook["events"] == ["job.failed"] and hook["description"] == "ops pager"
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=acme).json()
    assert shown == {k: v for k, v in hook.items() if k != "secret"}  # the secret is shown once
    assert hook["id"] in [h["id"] for h in client.get("/v1/webhooks", headers=acme).json()["data"]]

    assert hook["id"] not in [h["id"] for h in
                              client.get("/v1/webhooks", headers=globex).json()["data"]]
    for method, path in (("GET", f"/v1/webhooks/{hook['id']}"),
                         ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
                         ("DELETE", f"/v1/webhooks/{hook['id']}")):
        res = client.request(method, path, headers=globex)
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found", path
        assert client.request(method, path).status_code == 401, path

    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=acme).status_code == 200
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=acme).status_code == 404
