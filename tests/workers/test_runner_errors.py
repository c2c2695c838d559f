"""The runner's error policy, driven in-process: transient errors re-queue with backoff, until the
attempt limit; deterministic ones fail at once with a clear error."""
import pytest
from helpers import events_of, toy_csv
from sqlalchemy.exc import OperationalError

from workers import runner


@pytest.fixture
def job_id(client, monkeypatch):
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: True)  # nothing consumes it
    ds = client.post("/v1/datasets", files={"file": ("e.csv", toy_csv(20))}).json()
    return client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                         "training_dataset": ds["id"]}).json()["id"]


def test_a_transient_error_requeues_with_backoff(client, job_id, monkeypatch):
    sent = []
    monkeypatch.setattr("app.queue.send_training",
                        lambda jid, countdown=0, **_: sent.append(countdown))

    def database_gone(*_):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(runner, "_train", database_gone)
    runner.run_job(job_id, "test-worker")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["attempts"] == 1 and sent == [5.0]
    assert "transient error" in events_of(client, job_id)[-1]["message"]
    runner.run_job(job_id, "test-worker")
    assert sent == [5.0, 10.0]  # exponential backoff


def test_the_attempt_limit_ends_a_job_that_keeps_failing(client, job_id, monkeypatch):
    monkeypatch.setattr(runner, "_train", lambda *_: (_ for _ in ()).throw(TimeoutError("slow")))
    from app.config import get_settings

    monkeypatch.setattr(get_settings(), "max_attempts", 2)
    runner.run_job(job_id, "test-worker")
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    runner.run_job(job_id, "test-worker")  # the last allowed attempt: no more retries
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["attempts"] == 2
    assert "TimeoutError" in job["error"]["message"]


def test_a_deterministic_error_fails_at_once(client, job_id, monkeypatch):
    def bad_config(*_):
        raise ValueError("shapes do not match")

    monkeypatch.setattr(runner, "_train", bad_config)
    runner.run_job(job_id, "test-worker")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"] == {"code": "training_error",
                            "message": "Training failed: ValueError: shapes do not match"}


def test_a_second_delivery_of_a_claimed_job_does_nothing(client, job_id, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "_train", lambda *a: calls.append(a) or (_ for _ in ()).throw(
        ValueError("stop")))
    runner.run_job(job_id, "w1")
    runner.run_job(job_id, "w2")  # the job is failed now: not queued, so not claimable
    assert len(calls) == 1
