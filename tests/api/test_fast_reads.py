"""The hot reads answered before FastAPI's routing (app.fast_reads) give the regular routes' bytes:
the same body for a job (queued, with its `queue`), and errors still in the service's shape."""
import json

from helpers import keys_required, new_key, toy_csv

from app.config import get_settings
from app.db import session_scope
from app.jobs import service


def test_a_job_reads_the_same_on_both_paths(client, monkeypatch):
    # A GPU job: the session's CPU worker (when a test started it) leaves it queued, so both
    # paths read the same state.
    monkeypatch.setattr(get_settings(), "worker_classes", "cpu,gpu:1")
    ds = client.post("/v1/datasets", files={"file": ("f.csv", toy_csv(20))}).json()["id"]
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds,
                                        "metadata": {"note": "café"},
                                        "resources": {"device": "gpu"}}).json()
    try:
        _reads_the_same(client, job)
    finally:
        client.post(f"/v1/jobs/{job['id']}/cancel")


def _reads_the_same(client, job: dict) -> None:
    fast = client.get(f"/v1/jobs/{job['id']}")
    regular = client.get(f"/v1/jobs/{job['id']}?via=route")  # a query string: the FastAPI route
    assert fast.status_code == regular.status_code == 200
    assert fast.content == regular.content
    assert fast.headers["content-type"] == regular.headers["content-type"]
    with session_scope() as s:  # what the ORM path built before the read path existed
        orm = service.out(s, get_settings(), service.get(s, "default", job["id"]))
    assert fast.content == json.dumps(orm.model_dump(mode="json"), ensure_ascii=False,
                                      separators=(",", ":")).encode()
    assert fast.json()["status"] == "queued" and fast.json()["queue"]["position"] >= 1
    listed = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert [j for j in listed if j["id"] == job["id"]] == [fast.json()]


def test_misses_answer_in_the_service_error_shape(client):
    res = client.get("/v1/jobs/job_nope")
    assert res.status_code == 404 and res.json()["error"]["param"] == "id"
    res = client.get("/v1/models/mdl_nope")
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
    ds = client.post("/v1/datasets", files={"file": ("g.csv", toy_csv(20))}).json()["id"]
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds}).json()
    with keys_required():
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 401
        _, other = new_key("fast-reads-other")
        res = client.get(f"/v1/jobs/{job['id']}", headers=other)  # another tenant's: 404
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"


def test_a_failing_or_slow_database_sends_reads_to_the_thread_pool(monkeypatch):
    """Reads run on the event loop only while the database answers fast."""
    import asyncio
    import threading

    from app import fast_reads
    from app.errors import NotFound

    where = []

    def read(tenant, object_id):
        where.append(threading.current_thread() is threading.main_thread())
        if object_id == "broken":
            raise ConnectionError("database gone")
        if object_id == "missing":
            raise NotFound("no such thing")
        return {"id": object_id}

    def attempt(reads, object_id):
        try:
            return asyncio.run(reads.inline.run(read, "default", object_id))
        except (ConnectionError, NotFound):
            return None

    reads = fast_reads.FastReads(None, [])
    attempt(reads, "missing")  # the service's own error: still inline after it
    attempt(reads, "a")
    attempt(reads, "broken")  # the database failed: the next reads go to the thread pool
    attempt(reads, "b")
    assert where == [True, True, True, False]
    slow = fast_reads.FastReads(None, [])
    monkeypatch.setattr(fast_reads, "INLINE_BUDGET_S", 0.0)  # every read counts as slow
    attempt(slow, "c")
    attempt(slow, "d")
    assert where[-2:] == [True, False]
