"""A queued job shows its place in the queue (among the queued jobs of every tenant, by when they
were queued; a count only) and how many workers take jobs (their heartbeat rows), on the job
object and in the SSE stream's `progress` events; null once it is no longer queued."""
import json
from datetime import timedelta

import pytest
from helpers import toy_csv
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Job, Worker
from app.models.base import utcnow
from workers.heartbeat import Heartbeat


def queued_now() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.status == "queued"))


def live_workers() -> int:
    """Worker processes of this test session (0 unless a test started the `worker` fixture)."""
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Worker).where(
            Worker.heartbeat_at >= utcnow() - timedelta(seconds=15)))


def place(job_id: str) -> int:
    """The job's place by the documented rule, counted here from the table."""
    with session_scope() as s:
        mine = s.get(Job, job_id)
        return s.scalar(select(func.count()).select_from(Job).where(
            Job.status == "queued", (Job.enqueued_at < mine.enqueued_at)
            | ((Job.enqueued_at == mine.enqueued_at) & (Job.id <= job_id))))


def settled_read(read, job_ids):
    """read() together with the places the rule gives just before and just after it. Jobs of
    earlier tests may leave the queue meanwhile (the session's worker or maintenance pass takes
    or cancels them), so the read is retried until no place moved around it."""
    for _ in range(20):
        before = [place(j) for j in job_ids]
        got = read()
        if [place(j) for j in job_ids] == before:
            return got, before
    raise AssertionError("the queue never stood still for one read")


@pytest.fixture
def two_queued_jobs(client, monkeypatch):
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)  # no worker sees them
    # and none is sent them later: queued an hour ahead of the session's worker's clock, they
    # are too young for its pass to re-send
    monkeypatch.setattr("app.jobs.lifecycle.utcnow", lambda: utcnow() + timedelta(hours=1))
    ahead = queued_now()
    ds = client.post("/v1/datasets", files={"file": ("q.csv", toy_csv(20))}).json()
    jobs = [client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                          "training_dataset": ds["id"]}).json()
            for _ in range(2)]
    yield ahead, jobs
    for job in jobs:
        client.post(f"/v1/jobs/{job['id']}/cancel")


def test_queued_jobs_show_their_position_and_the_workers(client, two_queued_jobs):
    ahead, (first, second) = two_queued_jobs
    workers = live_workers()
    assert first["queue"]["position"] >= 1 and first["queue"]["workers"] == workers
    ids = [first["id"], second["id"]]
    got, places = settled_read(
        lambda: [client.get(f"/v1/jobs/{j}").json()["queue"] for j in ids], ids)
    assert got == [{"position": places[0], "workers": workers},
                   {"position": places[1], "workers": workers}]
    assert places[1] == places[0] + 1  # queued one after the other, nothing between them
    if ahead == 0 and workers == 0:  # run alone: nothing else queued, no worker running
        assert [q["position"] for q in got] == [1, 2] and got[0]["workers"] == 0
    listed, places = settled_read(lambda: {
        j["id"]: j["queue"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]}, ids)
    assert [listed[j]["position"] for j in ids] == places
    # the first leaves the queue: the second moves up; a cancelled job shows no queue
    cancelled = client.post(f"/v1/jobs/{first['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["queue"] is None
    moved, (now,) = settled_read(
        lambda: client.get(f"/v1/jobs/{second['id']}").json()["queue"]["position"], [second["id"]])
    assert moved == now and now <= places[0]


def test_the_sse_progress_event_carries_the_queue_while_queued(client, two_queued_jobs):
    _, (_, second) = two_queued_jobs
    with client.stream("GET", f"/v1/jobs/{second['id']}/events",
                       headers={"Accept": "text/event-stream"}) as res:
        lines = res.iter_lines()
        for line in lines:
            if line == "event: progress":
                data = json.loads(next(lines).removeprefix("data: "))
                break
    assert data["queue"] == client.get(f"/v1/jobs/{second['id']}").json()["queue"]
    assert data["total_steps"] is None and data["step"] == 0


def test_a_worker_counts_while_its_heartbeat_is_fresh(client, two_queued_jobs):
    _, (first, _) = two_queued_jobs
    before = client.get(f"/v1/jobs/{first['id']}").json()["queue"]["workers"]
    beat = Heartbeat(5.0, worker_id="test-host:1")
    beat.beat()
    beat.beat()  # refreshes its row, doesn't add one
    assert client.get(f"/v1/jobs/{first['id']}").json()["queue"]["workers"] == before + 1
    with session_scope() as s:  # silent for longer than 3 intervals: no longer counted
        s.get(Worker, "test-host:1").heartbeat_at = utcnow() - timedelta(minutes=1)
    assert client.get(f"/v1/jobs/{first['id']}").json()["queue"]["workers"] == before
    beat.beat()
    beat.stop()  # shutdown removes the row
    assert client.get(f"/v1/jobs/{first['id']}").json()["queue"]["workers"] == before
    with session_scope() as s:
        assert s.get(Worker, "test-host:1") is None


def test_running_and_finished_jobs_have_no_queue(client, two_queued_jobs):
    _, (first, _) = two_queued_jobs
    client.post(f"/v1/jobs/{first['id']}/cancel")
    assert client.get(f"/v1/jobs/{first['id']}").json()["queue"] is None


def test_a_running_worker_process_is_counted(client, worker, monkeypatch):
    """Last in this file: it starts the session's worker process, whose heartbeat thread makes
    its row at start-up; a job queued now shows it."""
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)
    ds = client.post("/v1/datasets", files={"file": ("q.csv", toy_csv(20))}).json()
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                        "training_dataset": ds["id"]}).json()
    try:
        assert live_workers() >= 1
        assert job["queue"]["workers"] == live_workers()
    finally:
        client.post(f"/v1/jobs/{job['id']}/cancel")
