"""One job trained by two processes (DistributedDataParallel, gloo on CPU) through the real worker:
the same metrics as one process, and a SIGKILLed rank ends in a resumed, succeeded job that
matches the uninterrupted run metric for metric."""
import re
import time
from pathlib import Path

import pytest
from helpers import events_of, toy_csv, wait_for_job

EPOCHS = 2
INTERVAL = 4  # a resume checkpoint every 4 steps (this module's worker)
JOB = {"base_model": "tiny-bert", "method": "full", "validation_split": 0.25, "seed": 11,
       "hyperparameters": {"epochs": EPOCHS, "batch_size": 8, "learning_rate": 1e-3}}
# Without dropout, 1 and 2 processes compute the same thing in another summation order: measured
# differences are below 1e-7 relative (README, "One job on several processes").
HEAD = {**JOB, "method": "head", "hyperparameters": {
    "epochs": EPOCHS, "batch_size": 7, "learning_rate": 1e-2, "dropout": 0}}
LOSS_RTOL = 1e-5


@pytest.fixture(scope="module")
def ddp_worker(worker):
    """The session's worker, restarted with a resume checkpoint every INTERVAL steps, in float32
    (bf16 autocast, on CPUs with AMX, would round the two summation orders apart)."""
    worker.stop()
    worker.extra_env = {"ADAPT_CHECKPOINT_EVERY_STEPS": str(INTERVAL),
                        "ADAPT_TRAIN_PRECISION": "fp32"}
    worker.start()
    yield worker
    worker.stop()
    worker.extra_env = {}
    worker.start()


@pytest.fixture(scope="module")
def dataset(client):
    return client.post("/v1/datasets", files={"file": ("ddp.csv", toy_csv(240))}).json()


def run(client, dataset, processes: int, job: dict = JOB) -> str:
    body = {**job, "training_dataset": dataset["id"]}
    body["hyperparameters"] = {**job["hyperparameters"], "processes": processes}
    res = client.post("/v1/jobs", json=body)
    assert res.status_code == 201, res.text
    return res.json()["id"]


def test_more_processes_than_examples_per_batch_is_a_422(client, dataset):
    body = {**JOB, "training_dataset": dataset["id"],
            "hyperparameters": {"batch_size": 4, "processes": 5}}
    res = client.post("/v1/jobs", json=body)
    assert res.status_code == 422, res.text
    assert res.json()["error"]["param"] == "hyperparameters.processes"


def per_epoch(client, job_id) -> dict[int, dict]:
    ckpts = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"]
    return {c["epoch"]: c["metrics"] for c in ckpts}


@pytest.fixture(scope="module")
def two_process_run(client, ddp_worker, dataset):
    job_id = run(client, dataset, 2)
    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["hyperparameters"]["processes"] == 2
    return job_id


def test_two_processes_train_the_model_one_process_trains(client, ddp_worker, dataset):
    """Batches of 7 over 2 processes: shares of 4 and 3, and a last batch of 5 (180 examples)."""
    jobs = [run(client, dataset, n, HEAD) for n in (1, 2)]
    for job_id in jobs:
        assert wait_for_job(client, job_id)["status"] == "succeeded"
    a, b = (per_epoch(client, job_id) for job_id in jobs)
    assert sorted(a) == sorted(b) == list(range(1, EPOCHS + 1))
    for epoch in a:
        print(f"epoch {epoch}: 1 process {a[epoch]}\n         2 processes {b[epoch]}")
        for name in ("val_loss", "train_loss"):
            assert b[epoch][name] == pytest.approx(a[epoch][name], rel=LOSS_RTOL), (epoch, name)
        for name in ("val_accuracy", "val_macro_f1"):
            assert b[epoch][name] == a[epoch][name], (epoch, name)


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the worker's training process of that rank (named adapt-rankN)."""
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and (proc / "comm").read_text().strip() == f"adapt-rank{rank}"
                    and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent):
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.chaos
def test_sigkill_of_one_rank_resumes_the_group_exactly(client, ddp_worker, dataset,
                                                       two_process_run):
    import os
    import signal

    job_id = run(client, dataset, 2)
    job = wait_for_job(client, job_id, until=lambda j: (j["progress"] or {}).get("step", 0)
                       >= INTERVAL + 2 or j["status"] not in ("queued", "running"))
    assert job["status"] == "running", job
    pid = _rank_pid(ddp_worker.proc.pid, 1)
    assert pid is not None, "no adapt-rank1 process under the worker"
    os.kill(pid, signal.SIGKILL)
    t_kill = time.time()
    job = wait_for_job(client, job_id)
    messages = [e["message"] for e in events_of(client, job_id)]
    assert job["status"] == "succeeded" and job["attempts"] == 2, (job, messages)
    assert any("rank 1: killed by SIGKILL" in m for m in messages), messages
    resumed = [int(re.match(r"resumed from step (\d+)", m).group(1)) for m in messages
               if m.startswith("resumed from step")]
    assert len(resumed) == 1 and resumed[0] >= INTERVAL, messages
    reference = per_epoch(client, two_process_run)
    got = per_epoch(client, job_id)
    for epoch, metrics in reference.items():  # killed and resumed == never interrupted
        for name, value in metrics.items():
            assert abs(got[epoch][name] - value) <= 1e-6, (epoch, name, got[epoch], metrics)
    print(f"\nrank 1 SIGKILLed; job resumed from step {resumed[0]} and succeeded "
          f"{time.time() - t_kill:.1f}s later, metrics equal to the uninterrupted run")


def test_cancel_stops_every_rank(client, ddp_worker, dataset):
    job_id = run(client, dataset, 2, {**JOB, "hyperparameters": {"epochs": 50, "batch_size": 2}})
    wait_for_job(client, job_id, until=lambda j: (j["progress"] or {}).get("step", 0) >= 2)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert wait_for_job(client, job_id, timeout=60)["status"] == "cancelled"
    deadline = time.time() + 30
    while _rank_pid(ddp_worker.proc.pid, 0) or _rank_pid(ddp_worker.proc.pid, 1):
        assert time.time() < deadline, "a rank outlived its cancelled job"
        time.sleep(0.2)


@pytest.mark.chaos
def test_sigterm_checkpoints_every_rank_and_resumes_exactly(client, ddp_worker, dataset,
                                                            two_process_run):
    job_id = run(client, dataset, 2)
    wait_for_job(client, job_id, until=lambda j: (j["progress"] or {}).get("step", 0)
                 >= INTERVAL + 1)
    took = ddp_worker.sigterm()
    job = client.get(f"/v1/jobs/{job_id}").json()
    messages = [e["message"] for e in events_of(client, job_id)]
    assert job["status"] == "queued", (took, job, messages)
    assert any(m.startswith("worker shutting down: checkpoint at step") for m in messages)
    ddp_worker.start()
    assert wait_for_job(client, job_id)["status"] == "succeeded"
    reference, got = per_epoch(client, two_process_run), per_epoch(client, job_id)
    for epoch, metrics in reference.items():
        for name, value in metrics.items():
            assert abs(got[epoch][name] - value) <= 1e-6, (epoch, name, got[epoch], metrics)
    print(f"\nSIGTERM: worker exited {took:.1f}s after it, the job resumed and matched the "
          "uninterrupted run")
