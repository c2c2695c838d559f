"""Cancel of a job whose worker died (running, lease lapsed): nobody would act on a cancel request,
so it ends `cancelled` at once instead of waiting for the lease expiry to be noticed."""
import time
from datetime import timedelta

from helpers import events_of, toy_csv
from sqlalchemy import update

from app.db import session_scope
from app.models import Job
from app.models.base import utcnow


def _owned_job(client, monkeypatch, status: str, lease_left_s: float) -> str:
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: True)  # no worker runs it
    ds = client.post("/v1/datasets", files={"file": ("o.csv", toy_csv(20))}).json()
    job_id = client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                           "training_dataset": ds["id"]}).json()["id"]
    with session_scope() as s:  # as a worker that claimed it and then died (or still lives)
        s.execute(update(Job).where(Job.id == job_id).values(
            status=status, attempts=1, worker_id="gone:4242",
            lease_expires_at=utcnow() + timedelta(seconds=lease_left_s)))
    return job_id


def _cancelled_at_once(client, job_id: str) -> None:
    """The cancel ends the job `cancelled` within the request. A worker process's maintenance
    pass (the suite's worker may be running) can notice the lapsed lease first: then the cancel
    meets a job it already ended (409 job_finished) or re-queued (cancelled before it started).
    Either way the user sees `cancelled` at once, and the events say the lease had expired."""
    t0 = time.perf_counter()
    res = client.post(f"/v1/jobs/{job_id}/cancel")
    assert time.perf_counter() - t0 < 2
    assert (res.status_code == 200 and res.json()["status"] == "cancelled") or (
        res.status_code == 409 and res.json()["error"]["code"] == "job_finished"), res.text
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["finished_at"]
    assert any("lease expired" in e["message"] for e in events_of(client, job_id))


def test_cancel_of_an_orphaned_running_job_is_immediate(client, monkeypatch):
    _cancelled_at_once(client, _owned_job(client, monkeypatch, "running", lease_left_s=-5))


def test_cancel_of_an_orphaned_cancelling_job_is_immediate(client, monkeypatch):
    _cancelled_at_once(client, _owned_job(client, monkeypatch, "cancelling", lease_left_s=-5))


def test_a_live_workers_job_is_asked_to_stop(client, monkeypatch):
    job_id = _owned_job(client, monkeypatch, "running", lease_left_s=30)
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelling"
