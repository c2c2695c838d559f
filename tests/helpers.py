"""Helpers shared by the tests."""
import time


def wait_for_job(client, job_id: str, timeout: float = 180, until=None) -> dict:
    """Poll the job until it has finished (or `until(job)` holds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if (until or (lambda j: j["status"] in ("succeeded", "failed", "cancelled")))(job):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


def toy_csv(n: int = 120, seed: int = 0) -> bytes:
    """A separable two-class text dataset: the class is in the words."""
    import random

    rng = random.Random(seed)
    pos = ["great", "wonderful", "brilliant", "moving", "superb", "delightful"]
    neg = ["awful", "boring", "dull", "terrible", "tedious", "lifeless"]
    rows = ["text,label"]
    for i in range(n):
        words, label = (pos, "good") if i % 2 else (neg, "bad")
        rows.append(f"{' '.join(rng.choices(words, k=4))} film,{label}")
    return ("\n".join(rows) + "\n").encode()



REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def restart_redis() -> None:
    """Restart the local Redis with its memory wiped (it keeps nothing on disk)."""
    import os
    import subprocess

    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
                   capture_output=True, timeout=30)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True).returncode:
            break
        time.sleep(0.1)
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    subprocess.run(REDIS_START, check=True, timeout=30)
    for _ in range(100):
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True)
        if out.stdout.strip() == "PONG":
            return
        time.sleep(0.1)
    raise RuntimeError("redis did not come back")


def events_of(client, job_id: str) -> list[dict]:
    return client.get(f"/v1/jobs/{job_id}/events").json()["data"]
