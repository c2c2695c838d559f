"""Chaos against real worker processes (and real PostgreSQL + Redis when configured): workers
SIGKILLed at random steps and restarted, SIGTERM, cancels, Redis restarted with its memory wiped,
PostgreSQL restarted. Every job must end exactly once, with a complete, duplicate-free history."""
import random
import re
import statistics
import time
from datetime import datetime

import pytest
from helpers import events_of, restart_redis, toy_csv, wait_for_job

from app.config import Settings

pytestmark = pytest.mark.chaos
INTERVAL = 10  # resume checkpoint every 10 steps (the chaos worker's setting)
EPOCHS = 3
JOB = {"base_model": "tiny-bert", "method": "full", "validation_split": 0.25,
       "hyperparameters": {"epochs": EPOCHS, "batch_size": 2, "learning_rate": 1e-3}}


@pytest.fixture(scope="module")
def chaos(worker):
    """The session's worker, restarted with a resume checkpoint every INTERVAL steps."""
    worker.stop()
    worker.extra_env = {"ADAPT_CHECKPOINT_EVERY_STEPS": str(INTERVAL)}
    worker.start()
    yield worker
    worker.stop()
    worker.extra_env = {}
    worker.start()


@pytest.fixture(scope="module")
def dataset(client):
    return client.post("/v1/datasets", files={"file": ("chaos.csv", toy_csv(240))}).json()


def start_job(client, dataset, seed: int, **overrides) -> str:
    body = {**JOB, "training_dataset": dataset["id"], "seed": seed, **overrides}
    res = client.post("/v1/jobs", json=body)
    assert res.status_code == 201, res.text
    return res.json()["id"]


def step_of(client, job_id):
    job = client.get(f"/v1/jobs/{job_id}").json()
    return job, (job["progress"] or {}).get("step") or 0


def resumed_steps(client, job_id) -> list[int]:
    return [int(re.match(r"resumed from step (\d+)", e["message"]).group(1))
            for e in events_of(client, job_id) if e["message"].startswith("resumed from step")]


def assert_ran_exactly_once(client, job_id, attempts: int) -> dict:
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    assert job["attempts"] == attempts, [e["message"] for e in events_of(client, job_id)]
    events = events_of(client, job_id)
    assert sum(e["message"].startswith("job succeeded") for e in events) == 1
    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    keys = [(m["step"], m["name"]) for m in metrics]
    assert len(keys) == len(set(keys)), "duplicate metric rows"
    evals = sorted(m["step"] for m in metrics if m["name"] == "val_accuracy")
    steps = job["progress"]["total_steps"] // EPOCHS
    assert evals == [steps * e for e in range(1, EPOCHS + 1)], "incomplete metric history"
    ckpts = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"]
    assert [c["epoch"] for c in ckpts] == list(range(1, EPOCHS + 1))
    assert sum(c["is_best"] for c in ckpts) == 1
    models = [m for m in client.get("/v1/models", params={"limit": 100}).json()["data"]
              if m["job"] == job_id]
    assert len(models) == 1 and models[0]["id"] == job["model"]
    return {c["epoch"]: c["metrics"] for c in ckpts}


def test_sigkill_at_random_steps_loses_nothing_and_resumes_exactly(client, chaos, dataset):
    reference = start_job(client, dataset, seed=101)
    ref_metrics = assert_ran_exactly_once(client, reference,
                                          wait_for_job(client, reference)["attempts"])
    rng = random.Random(2024)
    total_kills, lost = 0, []
    for seed in (101, 102, 103, 104):
        job_id = start_job(client, dataset, seed=seed)
        kills = 0
        while kills < 3:
            job, step = step_of(client, job_id)
            target = max(step + rng.randint(8, 60), INTERVAL + 2)
            while step < target and job["status"] in ("queued", "running"):
                time.sleep(0.01)
                job, step = step_of(client, job_id)
            if job["status"] != "running":
                break
            chaos.kill()
            kills += 1
            chaos.start()
            deadline = time.time() + 60
            while len(resumed := resumed_steps(client, job_id)) < kills:
                assert time.time() < deadline, events_of(client, job_id)
                time.sleep(0.1)
            lost.append(step - resumed[-1])  # `step` was seen before the kill: ≤ the true step
            assert resumed[-1] >= step - INTERVAL, (step, resumed)
        wait_for_job(client, job_id)
        metrics = assert_ran_exactly_once(client, job_id, attempts=kills + 1)
        total_kills += kills
        if seed == 101:  # killed and resumed == never interrupted, metric for metric
            for epoch, m in ref_metrics.items():
                for name, value in m.items():
                    assert abs(metrics[epoch][name] - value) <= 1e-6, (epoch, name)
    print(f"\nchaos SIGKILL: {total_kills} kills, 0 lost jobs, 0 duplicate runs, 0 duplicate "
          f"metric rows; steps lost per kill (seen before kill → resumed): max {max(lost)}, "
          f"mean {statistics.mean(lost):.1f}; checkpoint interval {INTERVAL}")
    assert total_kills >= 10


def test_sigterm_checkpoints_and_requeues_within_30s(client, chaos, dataset):
    job_id = start_job(client, dataset, seed=7)
    wait_for_job(client, job_id, until=lambda j: (j["progress"] or {}).get("step", 0) >= 25)
    took = chaos.sigterm()
    job, seen = step_of(client, job_id)
    assert took < 30 and job["status"] == "queued", (took, job)
    messages = [e["message"] for e in events_of(client, job_id)]
    assert any(m.startswith("worker shutting down: checkpoint at step") for m in messages)
    chaos.start()
    wait_for_job(client, job_id)
    assert_ran_exactly_once(client, job_id, attempts=2)
    assert resumed_steps(client, job_id)[0] >= seen
    print(f"\nchaos SIGTERM: worker exited {took:.1f}s after SIGTERM, job re-queued, resumed at "
          f"step {resumed_steps(client, job_id)[0]} (progress seen: {seen})")


def test_cancel_latency_over_20_running_jobs(client, chaos, dataset):
    latencies = []
    for i in range(20):
        job_id = start_job(client, dataset, seed=i, hyperparameters={"epochs": 50, "batch_size": 1})
        wait_for_job(client, job_id, until=lambda j: (j["progress"] or {}).get("step", 0) >= 2)
        t0 = time.perf_counter()
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        while client.get(f"/v1/jobs/{job_id}").json()["status"] != "cancelled":
            assert time.perf_counter() - t0 < 60, "cancel never took effect"
            time.sleep(0.01)
        latencies.append(time.perf_counter() - t0)
    q = statistics.quantiles(latencies, n=20)
    print(f"\ncancel latency over {len(latencies)} running jobs: p50 "
          f"{statistics.median(latencies):.3f}s, p95 {q[18]:.3f}s, max {max(latencies):.3f}s")


@pytest.fixture
def redis_broker(environment):
    if not environment.resolved_broker_url.startswith("redis"):
        pytest.skip("needs the Redis broker (ADAPT_TEST_BROKER_URL)")


def test_redis_restarts_lose_no_job_and_run_none_twice(client, chaos, dataset, redis_broker):
    from app.queue import queue_size

    running = start_job(client, dataset, seed=1)
    wait_for_job(client, running, until=lambda j: (j["progress"] or {}).get("step", 0) >= 10)
    restart_redis()  # mid-job
    assert wait_for_job(client, running)["status"] == "succeeded"

    chaos.stop()
    try:
        quick = {"hyperparameters": {"epochs": 1, "batch_size": 32}, "validation_split": 0.25}
        jobs = [start_job(client, dataset, seed=i, **quick) for i in range(20)]
        assert queue_size() >= 20
        restart_redis()  # every queued message is gone with it
        assert queue_size() == 0
    finally:
        chaos.start()  # its reconciler finds 20 queued jobs the broker no longer holds
    for job_id in jobs:
        job = wait_for_job(client, job_id, timeout=120)
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        started = [e for e in events_of(client, job_id) if e["message"].startswith("job started")]
        assert len(started) == 1


def test_postgres_restart_is_503_then_recovers(client, chaos, dataset, environment):
    if not environment.resolved_database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (ADAPT_TEST_DATABASE_URL)")
    import subprocess

    version = subprocess.run("ls /etc/postgresql", shell=True, capture_output=True,
                             text=True).stdout.split()[0]
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    subprocess.run([*ctl, "stop", "-m", "fast"], check=True, timeout=60)
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
        res = client.get("/v1/jobs")
        assert res.status_code == 503 and res.json()["error"]["code"] == "database_unavailable"
        res = client.post("/v1/datasets", files={"file": ("x.csv", toy_csv(10))})
        assert res.status_code == 503
    finally:
        subprocess.run([*ctl, "start"], check=True, timeout=60)
    for _ in range(100):
        if client.get("/readyz").status_code == 200:
            break
        time.sleep(0.2)
    assert client.get("/v1/jobs").status_code == 200
    job_id = start_job(client, dataset, seed=3, hyperparameters={"epochs": 1, "batch_size": 32})
    assert wait_for_job(client, job_id)["status"] == "succeeded"  # the worker recovered too


@pytest.fixture
def default_workers(worker, tmp_path):
    """Two workers on the DEFAULT lease, maintenance interval and attempt limit (the suite's short
    test values removed), a resume checkpoint every INTERVAL steps; the session's worker (and the
    chaos one) stay stopped meanwhile, so the job only runs on these."""
    worker.stop()
    env = {"ADAPT_LEASE_S": None, "ADAPT_RECONCILE_INTERVAL_S": None, "ADAPT_MAX_ATTEMPTS": None,
           "ADAPT_CHECKPOINT_EVERY_STEPS": str(INTERVAL)}
    pair = []
    try:
        for name in ("a", "b"):
            pair.append(type(worker)(tmp_path / f"worker-{name}.log", extra_env=env))
        yield pair
    finally:
        for w in pair:
            w.stop()
        worker.start()


def _ts(created_at: str) -> float:
    return datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()


def test_five_sigkills_with_default_settings_still_succeed(client, default_workers, dataset):
    """ADAPT_MAX_ATTEMPTS=5, five SIGKILLs that each come after progress: the job succeeds (the
    limit counts attempts without progress), each resume within 15 s of its kill (lease 8 s,
    maintenance every 2 s), with a complete, duplicate-free history. Kills come a few steps past a
    new resume checkpoint (INTERVAL), so every attempt makes progress."""
    defaults = Settings.model_fields  # what the workers run with: the suite's values removed
    assert defaults["max_attempts"].default == 5 and defaults["lease_s"].default <= 10
    rng = random.Random(5)
    job_id = start_job(client, dataset, seed=105)
    latencies, kill_steps = [], []
    for kill in range(1, 6):
        resumed = (resumed_steps(client, job_id) or [0])[-1]
        target = resumed + INTERVAL + rng.randint(3, 20)  # past a new resume checkpoint
        job, step = step_of(client, job_id)
        while step < target or job["status"] != "running":
            assert job["status"] in ("queued", "running"), (kill_steps, job)
            time.sleep(0.01)
            job, step = step_of(client, job_id)
        started = [e for e in events_of(client, job_id)  # "job started on host:pid (attempt n)"
                   if e["message"].startswith("job started on ")][-1]["message"]
        pid = int(started.split(" (attempt")[0].rsplit(":", 1)[1])
        victim = next(w for w in default_workers if w.proc.pid == pid)
        t_kill = time.time()
        victim.kill()
        victim.start(wait=False)  # back in the pool (it boots while the other one takes over)
        kill_steps.append(step)
        deadline = time.time() + 60
        while len(resumed_at := [e for e in events_of(client, job_id)
                                 if e["message"].startswith("resumed from step")]) < kill:
            assert time.time() < deadline, events_of(client, job_id)
            time.sleep(0.1)
        latencies.append(_ts(resumed_at[-1]["created_at"]) - t_kill)
    job = wait_for_job(client, job_id, timeout=300)
    assert_ran_exactly_once(client, job_id, attempts=6)
    messages = [e["message"] for e in events_of(client, job_id)]
    assert not any("no progress" in m for m in messages), messages
    print(f"\nchaos 5 SIGKILLs, default settings: killed at steps {kill_steps}, resumed "
          f"{', '.join(f'{x:.1f}' for x in latencies)} s after each kill; job {job['status']} "
          f"after {job['attempts']} attempts, 0 duplicate metric rows")
    assert max(latencies) <= 15, latencies
