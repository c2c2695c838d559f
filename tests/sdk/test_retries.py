"""Retries of the SDK, sync and async: a real socket server that fails twice then answers,
Retry-After (seconds and HTTP date), what is not retried (409, 4xx, an open file, a POST without
a key after the connection dropped), one Idempotency-Key across a call's attempts, timeouts."""
import asyncio
import email.utils
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import adapt
from adapt import AsyncClient, Client
from adapt._http import retry_after


class FailTwice(BaseHTTPRequestHandler):
    """503 with Retry-After: 0 to the first two requests of a path, then 200."""

    seen: dict = {}

    def do_GET(self):
        n = self.seen[self.path] = self.seen.get(self.path, 0) + 1
        if n <= 2:
            body, status, headers = b'{"error": {"code": "unavailable", "message": "busy"}}', \
                503, {"Retry-After": "0"}
        else:
            body, status, headers = json.dumps({"object": "list", "data": []}).encode(), 200, {}
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                     **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def flaky_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailTwice)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", FailTwice.seen
    server.shutdown()


def test_sync_call_succeeds_on_the_third_attempt(flaky_server):
    url, seen = flaky_server
    with Client(url) as client:
        assert client.base_models.list() == []
    assert seen["/v1/base-models"] == 3


def test_async_call_succeeds_on_the_third_attempt(flaky_server):
    url, seen = flaky_server

    async def main():
        async with AsyncClient(url) as client:
            return [d async for d in client.datasets.list()]

    assert asyncio.run(main()) == []
    assert seen["/v1/datasets?limit=20"] == 3


def test_with_no_retries_the_first_503_is_raised(flaky_server):
    url, seen = flaky_server
    with Client(url, max_retries=0) as client:
        with pytest.raises(adapt.ServiceUnavailable):
            client.models.list().first_page()
        assert client.with_options(max_retries=2).models.list(limit=5).first_page().data == []
    assert seen["/v1/models?limit=20"] == 1


class Script:
    """A MockTransport answering from a list of responses (or exceptions); records requests."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def keys(self):
        return [r.headers.get("idempotency-key") for r in self.requests]


JOB = {"id": "job_1", "object": "job", "status": "queued", "base_model": "tiny-bert",
       "training_dataset": "ds_1", "validation_split": 0.1, "method": "full",
       "select_checkpoint_by": "val_loss", "seed": 0, "created_at": "2026-01-01T00:00:00Z"}
DATASET = {"id": "ds_1", "object": "dataset", "name": "d", "filename": "d.csv",
           "task": "text-classification", "format": "csv", "num_examples": 1, "labels": ["a"],
           "bytes": 1, "sha256": "0", "class_counts": {"a": 1}, "status": "ready",
           "created_at": "2026-01-01T00:00:00Z"}


def err(status, code="x", **headers):
    return httpx.Response(status, json={"error": {"code": code, "message": "m"}},
                          headers=headers)


def client(script, **kw):
    return Client("http://adapt.test", transport=httpx.MockTransport(script), **kw)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def test_a_create_keeps_one_idempotency_key_across_its_attempts(no_sleep):
    script = Script(httpx.ConnectError("refused"), err(502), httpx.Response(201, json=JOB),
                    httpx.Response(201, json=JOB))
    with client(script) as c:
        assert c.jobs.create("tiny-bert", "ds_1").id == "job_1"
        c.jobs.create("tiny-bert", "ds_1")
    first = script.keys()[:3]
    assert len(set(first)) == 1 and first[0].startswith("adapt-")
    assert script.keys()[3] not in first  # the next logical call has a key of its own
    assert len(no_sleep) == 2 and all(0 < w <= 1.0 for w in no_sleep)  # backoff with jitter


def test_the_callers_key_is_used_and_409_is_not_retried():
    script = Script(err(409, "idempotency_key_reused"))
    with client(script) as c, pytest.raises(adapt.Conflict):
        c.jobs.create("tiny-bert", "ds_1", idempotency_key="mine")
    assert script.keys() == ["mine"]


def test_retry_after_seconds_and_http_date(no_sleep):
    later = email.utils.format_datetime(
        __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
        + __import__("datetime").timedelta(seconds=4), usegmt=True)
    script = Script(err(429, **{"Retry-After": "1.5"}), err(503, **{"Retry-After": later}),
                    httpx.Response(200, json={"status": "ok"}))
    with client(script) as c:
        assert c.health()
    assert no_sleep[0] == 1.5 and 2 < no_sleep[1] <= 4
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None


def test_a_long_retry_after_is_raised_not_waited(no_sleep):
    script = Script(err(429, "rate_limited", **{"Retry-After": "3600"}))
    with client(script) as c, pytest.raises(adapt.RateLimited) as limited:
        c.datasets.get("ds_1")
    assert limited.value.retry_after == 3600 and no_sleep == []


def test_4xx_other_than_408_429_are_not_retried():
    for status in (400, 401, 404, 409, 422):
        script = Script(err(status))
        with client(script) as c, pytest.raises(adapt.AdaptError):
            c.datasets.get("ds_1")
        assert len(script.requests) == 1
    script = Script(err(408), httpx.Response(200, json=DATASET))
    with client(script) as c:
        assert c.datasets.get("ds_1").id == "ds_1"


def test_an_upload_is_retried_from_a_path_not_from_an_open_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nhello,a\n")
    script = Script(httpx.ReadError("reset"), httpx.Response(201, json=DATASET))
    with client(script) as c:
        assert c.datasets.upload(path).id == "ds_1"
    bodies = [r.content for r in script.requests]
    assert all(b"text,label\r\nhello,a" in b or b"text,label\nhello,a" in b for b in bodies)
    assert script.keys()[0] == script.keys()[1]
    script = Script(err(503), httpx.Response(201, json=DATASET))
    with client(script) as c, pytest.raises(adapt.ServiceUnavailable):
        c.datasets.upload(io.BytesIO(b"text,label\nhello,a\n"), filename="d.csv")
    assert len(script.requests) == 1


def test_a_post_without_a_key_is_not_resent_after_a_dropped_connection():
    script = Script(httpx.RemoteProtocolError("closed"))
    with client(script) as c, pytest.raises(adapt.APIConnectionError):
        c.jobs.cancel("job_1")
    assert len(script.requests) == 1
    script = Script(err(503), httpx.Response(200, json=JOB))  # refused: safe to resend
    with client(script) as c:
        assert c.jobs.cancel("job_1").id == "job_1"


def test_timeouts_raise_api_timeout_error_and_with_options_overrides():
    script = Script(*[httpx.ReadTimeout("slow")] * 3)
    with client(script, timeout=7) as c:
        with pytest.raises(adapt.APITimeoutError) as timed_out:
            c.jobs.get("job_1")
        assert isinstance(timed_out.value, adapt.APIConnectionError)
        assert timed_out.value.code == "timeout" and "did not answer" in str(timed_out.value)
        assert len(script.requests) == 3
        assert script.requests[0].extensions["timeout"]["read"] == 7
        fast = c.with_options(timeout=0.5, max_retries=0)
        assert (fast.timeout, fast.max_retries, c.timeout, c.max_retries) == (0.5, 0, 7, 2)
        script.answers = [httpx.ConnectTimeout("slow")]
        with pytest.raises(adapt.APITimeoutError):
            fast.jobs.get("job_1")
        assert script.requests[-1].extensions["timeout"]["connect"] == 0.5
        fast.close()  # the copy shares the pool: closing it leaves the client open
        script.answers = [httpx.Response(200, json=JOB)]
        assert c.jobs.get("job_1").id == "job_1"


def test_async_retries_keep_the_key():
    script = Script(httpx.ConnectError("refused"), httpx.Response(201, json=JOB))

    async def main():
        async with AsyncClient("http://adapt.test", transport=httpx.MockTransport(script)) as c:
            job = await c.jobs.create("tiny-bert", "ds_1")
            return job, await c.with_options(max_retries=0).health()

    with pytest.raises(IndexError):  # the script ran out: health was sent once, not retried
        asyncio.run(main())
    assert len(set(script.keys()[:2])) == 1 and len(script.requests) == 3


def test_wait_polls_through_a_brief_outage_and_times_out(no_sleep):
    running, done = {**JOB, "status": "running"}, {**JOB, "status": "succeeded"}
    script = Script(httpx.Response(200, json=running), err(503), httpx.Response(200, json=done))
    with client(script, max_retries=0) as c:
        assert c.jobs.wait("job_1").status == "succeeded"
        assert no_sleep == [0.0, 1.0, 2.0]  # the first look at once; after the 503, longer
        script.answers = [httpx.Response(200, json=running)]
        with pytest.raises(TimeoutError):
            c.jobs.wait("job_1", timeout=0)

    async def main():
        script.answers = [httpx.Response(200, json=running), httpx.Response(200, json=done)]
        async with AsyncClient("http://adapt.test", transport=httpx.MockTransport(script),
                               max_retries=0) as ac:
            return await ac.jobs.wait("job_1", poll_interval=0)

    assert asyncio.run(main()).status == "succeeded"
