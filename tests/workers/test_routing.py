"""Routing through the real broker and a real (CPU) worker process: a `cpu` job runs on it, a
`gpu` job waits in `training.gpu` untouched (counted per queue in /metrics), and with no GPU
worker declared the live CPU worker's heartbeat alone makes a GPU job a 422."""
import time

import pytest
from helpers import toy_csv, wait_for_job
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.jobs.service import _alive_since
from app.models import Worker
from app.queue import queue_size

pytestmark = pytest.mark.usefixtures("worker")


def test_jobs_reach_only_the_workers_of_their_class(client, monkeypatch):
    settings = get_settings()
    ds = client.post("/v1/datasets", files={"file": ("r.csv", toy_csv(40))}).json()["id"]
    body = {"base_model": "tiny-bert", "training_dataset": ds,
            "hyperparameters": {"epochs": 1, "batch_size": 8}}
    # The worker says what it is. Its first heartbeat is written just after it reports ready (a
    # restarted worker's may not be in yet), and only heartbeats this fresh make it capacity.
    deadline = time.time() + 30
    while True:
        with session_scope() as s:
            live = s.execute(select(Worker.device, Worker.gpus).where(
                Worker.heartbeat_at >= _alive_since(settings))).all()
        if ("cpu", 0) in live or time.time() > deadline:
            break
        time.sleep(0.2)
    assert set(live) == {("cpu", 0)}, live

    monkeypatch.setattr(settings, "worker_classes", "")  # only the live CPU worker counts
    res = client.post("/v1/jobs", json={**body, "resources": {"device": "gpu"}})
    assert res.status_code == 422 and res.json()["error"]["code"] == "no_worker_for_device"

    monkeypatch.setattr(settings, "worker_classes", "gpu:1")  # GPU workers exist (elsewhere)
    gpu_job = client.post("/v1/jobs", json={**body, "resources": {"device": "gpu"}}).json()
    try:
        cpu_job = client.post("/v1/jobs", json={**body, "resources": {"device": "cpu"}}).json()
        assert cpu_job["queue"]["workers"] >= 1
        assert wait_for_job(client, cpu_job["id"])["status"] == "succeeded"
        time.sleep(1)  # the worker is idle again, and still leaves the GPU job alone
        waiting = client.get(f"/v1/jobs/{gpu_job['id']}").json()
        assert waiting["status"] == "queued" and waiting["attempts"] == 0
        assert waiting["queue"]["workers"] == 0  # the CPU worker is live, but cannot take it
        assert queue_size("training.gpu") >= 1
        depth = {s.labels["queue"]: s.value for f in text_string_to_metric_families(
            client.get("/metrics").text) if f.name == "adapt_queue_depth" for s in f.samples}
        assert depth["training.gpu"] >= 1 and {"training", "training.cpu"} <= set(depth)
    finally:
        client.post(f"/v1/jobs/{gpu_job['id']}/cancel")


def test_an_idle_worker_told_to_stop_leaves_cleanly_and_its_job_waits_for_the_next(client,
                                                                                  worker):
    """SIGTERM to an idle worker ends its shutdown from the signal handler (workers.shutdown):
    it still exits 0 and takes its row out of the workers table, and a job created while no
    worker runs is taken by the next one."""
    def rows() -> set[str]:
        with session_scope() as s:
            return set(s.scalars(select(Worker.id)))

    pid = f":{worker.proc.pid}"
    assert any(r.endswith(pid) for r in rows())
    worker.sigterm()
    try:
        assert worker.proc.returncode == 0
        assert not any(r.endswith(pid) for r in rows())
        ds = client.post("/v1/datasets", files={"file": ("i.csv", toy_csv(40))}).json()["id"]
        job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds,
                                            "hyperparameters": {"epochs": 1}}).json()
    finally:
        worker.start()
    assert wait_for_job(client, job["id"])["status"] == "succeeded"
