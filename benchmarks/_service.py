"""Run the service as a user runs it (`adapt-serve`, embedded default, temporary data directory)
and talk to it over loopback HTTP with the standard library only."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RT = ROOT / "tests" / "fixtures" / "rotten_tomatoes"


def call(base: str, path: str, body: dict | None = None, raw: bytes | None = None,
         headers: dict | None = None) -> dict:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, headers=headers or (
        {"Content-Type": "application/json"} if body is not None else {}))
    with urllib.request.urlopen(req, timeout=600) as res:
        return json.loads(res.read())


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = "adaptbenchmarkboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


@contextlib.contextmanager
def serve(port: int, data_dir: Path | None = None, args: tuple = (), env: dict | None = None):
    """Yield the base URL of a running adapt-serve; stop it (and its worker) on exit."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="adapt-bench-"))
    env = {**os.environ, "ADAPT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **(env or {})}
    log = open(data_dir / f"serve-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "app.serve", "--port", str(port), *args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if call(base, "/readyz")["status"] == "ready":
                    break
            except OSError:
                time.sleep(1)
        yield base
    finally:  # the API and its worker process: the whole process group
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def upload(base: str, path: Path) -> dict:
    body, boundary = multipart(path)
    return call(base, "/v1/datasets", raw=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def run_job(base: str, request: dict, poll_s: float = 2) -> dict:
    """Create the job and poll it until it ends; raise unless it succeeded."""
    job = call(base, "/v1/jobs", request)
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(poll_s)
        job = call(base, f"/v1/jobs/{job['id']}")
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['status']}: {job['error']}")
    return job
