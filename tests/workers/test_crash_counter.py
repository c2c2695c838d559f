"""The crash limit counts attempts that made no progress: a job whose every attempt saves a resume
checkpoint past where it started survives any number of worker deaths; one that keeps dying where
it started is given up after ADAPT_MAX_ATTEMPTS such attempts."""
from datetime import timedelta

import pytest
from helpers import events_of, toy_csv
from sqlalchemy import update

from app.config import get_settings
from app.db import session_scope
from app.jobs import lifecycle
from app.models import Job
from app.models.base import utcnow
from workers import runner


@pytest.fixture
def job_id(client, monkeypatch):
    """A queued job no worker takes: no message is sent, and this process's job clock runs an
    hour ahead, so the session's worker (on the real clock) sees it queued in the future and
    its leases alive: it neither re-sends it nor expires them; only this test does."""
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: True)  # nothing consumes it
    monkeypatch.setattr(lifecycle, "utcnow", lambda: utcnow() + timedelta(hours=1))
    ds = client.post("/v1/datasets", files={"file": ("c.csv", toy_csv(20))}).json()
    job_id = client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                            "training_dataset": ds["id"]}).json()["id"]
    yield job_id
    client.post(f"/v1/jobs/{job_id}/cancel")  # left queued by most of these tests


def worker_dies(job_id: str) -> None:
    """The worker holding the job is SIGKILLed: its lease lapses and the maintenance pass runs."""
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            lease_expires_at=lifecycle.utcnow() - timedelta(seconds=1)))
    assert job_id in lifecycle.expire_leases()


def row(job_id: str) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def test_attempts_that_made_progress_never_count(client, job_id):
    limit = get_settings().max_attempts
    for n in range(limit + 3):  # more deaths than the limit, each after a new resume checkpoint
        claimed = lifecycle.claim(job_id, "w", 10)
        assert claimed == (n + 1, 0)
        assert lifecycle.saved(job_id, claimed.attempt, 10 * (n + 1))
        worker_dies(job_id)
    job = row(job_id)
    assert job.status == "queued" and job.crashes == 0 and job.attempts == limit + 3
    assert "it saved step" in events_of(client, job_id)[-1]["message"]


def test_an_attempt_that_saved_nothing_new_counts_one_crash(client, job_id):
    first = lifecycle.claim(job_id, "w", 10)
    lifecycle.saved(job_id, first.attempt, 20)
    worker_dies(job_id)
    second = lifecycle.claim(job_id, "w", 10)  # resumes from step 20, dies before step 30
    lifecycle.saved(job_id, second.attempt, 20)  # the same step again is no progress
    worker_dies(job_id)
    assert row(job_id).crashes == 1
    assert "no progress: crash 1" in events_of(client, job_id)[-1]["message"]
    third = lifecycle.claim(job_id, "w", 10)
    assert third == (3, 1)
    lifecycle.saved(job_id, third.attempt, 30)
    worker_dies(job_id)
    assert row(job_id).crashes == 1  # progress again: unchanged, not reset


def test_the_limit_applies_to_attempts_without_progress(client, job_id, monkeypatch):
    limit = get_settings().max_attempts
    for _ in range(limit):
        lifecycle.claim(job_id, "w", 10)
        worker_dies(job_id)
    assert row(job_id).crashes == limit
    monkeypatch.setattr(runner, "_train", lambda *_: pytest.fail("must not train"))
    runner.run_job(job_id, "w")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "too_many_attempts"
    assert f"{limit} attempts that made no progress" in job["error"]["message"]


def test_a_transient_error_after_progress_is_not_a_crash(client, job_id, monkeypatch):
    def progress_then_database_gone(job, lease, work_dir):
        lifecycle.saved(job, lease.attempt, 50)
        raise TimeoutError("database slow")

    monkeypatch.setattr(runner, "_train", progress_then_database_gone)
    runner.run_job(job_id, "w")
    job = row(job_id)
    assert job.status == "queued" and job.crashes == 0
