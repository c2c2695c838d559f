"""Helpers shared by the tests."""
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.config import get_settings
from app.db import session_scope
from app.keys import service as keys

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def keys_required() -> Iterator[None]:
    """API keys required for the block (the suite runs with ADAPT_AUTH=off)."""
    settings = get_settings()
    before, settings.auth = settings.auth, "on"
    try:
        yield
    finally:
        settings.auth = before


def new_key(tenant: str, admin: bool = False, name: str = "test") -> tuple[str, dict]:
    """(key id, headers that send it) for a new key of `tenant`."""
    with session_scope() as s:
        row, key = keys.create(s, tenant, f"{tenant}-{name}", admin)
        return row.id, {"Authorization": f"Bearer {key}"}


@contextmanager
def uvicorn_server(**env: str) -> Iterator[str]:
    """The API as uvicorn serves it, in its own process (no worker in it), on a free loopback
    port, with the test environment plus `env`; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
