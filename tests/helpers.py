"""Helpers shared by the tests."""
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.config import get_settings
from app.db import session_scope
from app.keys import service as keys

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "tests" / "fixtures" / "digits"


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


def wait_healthy(base: str, tries: int = 300) -> None:
    """Until the server at base answers /healthz (tries × 0.1 s at most)."""
    for _ in range(tries):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)


@contextmanager
def uvicorn_server(**env: str) -> Iterator[str]:
    """The API as uvicorn serves it, in its own process (no worker in it), on a free loopback
    port, with the test environment plus `env`; yields its base URL."""
    with uvicorn_servers(env) as (base,):
        yield base


@contextmanager
def uvicorn_servers(*envs: dict[str, str]) -> Iterator[list[str]]:
    """One uvicorn_server per env, all started before any is waited for (they start in
    parallel); yields their base URLs."""
    procs, bases = [], []
    try:
        for env in envs:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
                 "--log-level", "warning"], cwd=ROOT, env={**os.environ, **env}))
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait_healthy(base)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def model_server_stats(path: Path) -> dict:
    """What the model server on `path` reports (`stats`); OSError while it is down."""
    from app.models_api import model_server  # (torch: only where a test asks)

    return model_server.request_sync(str(path), {"op": "stats"})


def wait_model_server(path: Path, timeout: float = 90) -> dict:
    """The model server's stats, once it answers on `path`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return model_server_stats(path)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"model server on {path} did not start")


@contextmanager
def model_server_on_a_thread(server, path: Path) -> Iterator[tuple]:
    """`server` (a ModelServer) listening on `path` on a thread's event loop: (the loop,
    settings that point the API at it)."""
    from app.models_api import model_server

    loop = asyncio.new_event_loop()
    loop.create_task(model_server.serve(path, server))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        wait_model_server(path, 10)
        yield loop, get_settings().model_copy(update={"model_server": str(path)})
    finally:
        # every task (the server, its connections) cancelled and finished before the loop
        # closes: one left pending would be reported ("Task was destroyed but it is pending!",
        # an ERROR log) whenever it is garbage-collected, in whichever test runs then
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


# How long a job may take by default: longer with object storage, where each resume checkpoint
# (every 10 steps in tests/chaos) is uploaded before training goes on.
WAIT_S = 360 if os.environ.get("ADAPT_TEST_STORAGE") == "s3" else 180
# What a job that did not finish in time is reported with (tests/conftest.py adds each worker's
# state, thread stacks and log).
DIAGNOSTICS: list = []


def wait_for_job(client, job_id: str, timeout: float | None = None, until=None) -> dict:
    """Poll the job until it has finished (or `until(job)` holds)."""
    timeout = timeout or WAIT_S
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if (until or (lambda j: j["status"] in ("succeeded", "failed", "cancelled")))(job):
            return job
        time.sleep(0.25)
    raise AssertionError("\n".join([f"job {job_id} did not finish in {timeout}s: {job}"]
                                    + [diagnose() for diagnose in DIAGNOSTICS]))


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (its data builders serve tests too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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



TOPIC_WORDS = {
    "animal": ["dog", "cat", "horse", "cow", "sheep", "goat", "pig", "rabbit", "fox", "wolf",
               "bear", "lion", "tiger", "zebra", "giraffe", "elephant", "monkey", "deer", "moose",
               "otter", "beaver", "squirrel", "hedgehog", "badger", "camel", "donkey",
               "kangaroo", "koala", "panda", "leopard"],
    "vehicle": ["car", "truck", "bus", "bicycle", "motorcycle", "train", "tram", "van", "taxi",
                "scooter", "tractor", "ambulance", "limousine", "jeep", "minivan", "lorry",
                "coach", "trolleybus", "moped", "pickup", "sedan", "convertible", "hatchback",
                "bulldozer", "forklift", "snowmobile", "subway", "rickshaw", "tank", "caravan"]}
TOPIC_TEMPLATES = ["I saw a {} near the old bridge.", "There was a {} in front of our house.",
                   "My neighbour bought a {} last week.", "A {} appeared at the end of the road.",
                   "The children pointed at the {} and laughed.",
                   "Nobody expected the {} to be there."]


def topics_csv() -> bytes:
    """60 sentences, animal or vehicle, each naming a word no other sentence uses, in templates
    both classes share: only a model that knows what the words mean can tell them apart."""
    rows = ["text,label"]
    for i, (a, v) in enumerate(zip(*TOPIC_WORDS.values(), strict=True)):
        rows.append(f'"{TOPIC_TEMPLATES[i % 6].format(a)}",animal')
        rows.append(f'"{TOPIC_TEMPLATES[(i + 3) % 6].format(v)}",vehicle')
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


def digit_images(n: int = 6) -> list[bytes]:
    """n held-out digit images (PNG bytes), spread over the classes."""
    with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as zf:
        return [zf.read(name) for name in sorted(zf.namelist())[::37][:n]]


def train_digits(client, methods: list[tuple[str, int]]) -> list[str]:
    """Models of MobileNetV2 (ImageNet) trained for one epoch at 32 px on the digits, one per
    (method, seed): seconds each."""
    ds = client.post("/v1/datasets", files={"file": (
        "digits.zip", (DIGITS / "digits-train.zip").read_bytes())}).json()["id"]
    jobs = []
    for method, seed in methods:
        hp = {"epochs": 1, "image_size": 32, "learning_rate": 3e-3,
              **({"unfreeze_layers": 1} if method == "partial" else {})}
        res = client.post("/v1/jobs", json={"base_model": "mobilenet-v2-imagenet", "seed": seed,
                                            "training_dataset": ds, "method": method,
                                            "hyperparameters": hp})
        assert res.status_code == 201, res.text
        jobs.append(res.json()["id"])
    done = [wait_for_job(client, job, timeout=600) for job in jobs]
    assert all(job["status"] == "succeeded" for job in done), [j["error"] for j in done]
    return [job["model"] for job in done]
