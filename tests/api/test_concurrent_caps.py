"""Per-tenant caps hold under concurrency: 40 parallel creates against a real server process
(no worker in it, and the jobs ask for a GPU that the tests' CPU worker does not serve: they stay
queued) make exactly as many rows as the cap allows."""
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from helpers import toy_csv, uvicorn_server

from app.db import session_scope
from app.keys import service as keys

JOB_CAP, WEBHOOK_CAP, PARALLEL = 8, 20, 40


@pytest.fixture(scope="module")
def server(environment):
    with uvicorn_server(ADAPT_AUTH="on", ADAPT_MAX_ACTIVE_JOBS_PER_TENANT=str(JOB_CAP),
                        ADAPT_WORKER_CLASSES="cpu,gpu:1",
                        ADAPT_MAX_WEBHOOKS_PER_TENANT=str(WEBHOOK_CAP)) as base:
        yield base


def fresh_tenant() -> dict:
    tenant = f"cap-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        _, key = keys.create(s, tenant, "caps-test", False)
    return {"Authorization": f"Bearer {key}"}


def in_parallel(fn) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(fn, range(PARALLEL)))


def test_40_parallel_job_creates_make_exactly_the_cap(server):
    h = fresh_tenant()
    ds = httpx.post(f"{server}/v1/datasets", files={"file": ("c.csv", toy_csv(20))}, headers=h,
                    timeout=60).json()
    body = {"base_model": "tiny-bert", "training_dataset": ds["id"],
            "hyperparameters": {"epochs": 1}, "resources": {"device": "gpu"}}
    responses = in_parallel(lambda _: httpx.post(f"{server}/v1/jobs", json=body, headers=h,
                                                 timeout=120))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * JOB_CAP + [429] * (PARALLEL - JOB_CAP), [r.text for r in responses
                                                                       if r.status_code >= 500]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {
        "too_many_active_jobs"}
    jobs = httpx.get(f"{server}/v1/jobs", params={"limit": 100}, headers=h).json()["data"]
    assert len(jobs) == JOB_CAP and {j["status"] for j in jobs} == {"queued"}
    for j in jobs:  # nothing is left queued for a later test's worker to train
        httpx.post(f"{server}/v1/jobs/{j['id']}/cancel", headers=h, timeout=60)


def test_40_parallel_webhook_creates_make_exactly_the_cap(server):
    h = fresh_tenant()
    responses = in_parallel(lambda i: httpx.post(
        f"{server}/v1/webhooks", headers=h, timeout=120,
        json={"url": f"https://example.com/hook/{i}", "events": ["job.succeeded"]}))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * WEBHOOK_CAP + [409] * (PARALLEL - WEBHOOK_CAP), [
        r.text for r in responses if r.status_code >= 500]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "too_many_webhooks"}
    listed = httpx.get(f"{server}/v1/webhooks", params={"limit": 100}, headers=h).json()["data"]
    assert len(listed) == WEBHOOK_CAP
