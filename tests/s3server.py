"""A real S3-compatible server for the tests: moto in server mode, in its own process on a free
loopback port (or the endpoint in ADAPT_TEST_S3_ENDPOINT, e.g. a MinIO, with the usual AWS_*
credentials). No app imports: tests/conftest.py uses it before the settings are read."""
import atexit
import os
import socket
import subprocess
import sys
import time
import uuid

import boto3
import httpx

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
_endpoint: str | None = None


def endpoint() -> str:
    """The S3 endpoint URL, starting moto once per test run when none is configured."""
    global _endpoint
    if _endpoint is None:
        _endpoint = os.environ.get("ADAPT_TEST_S3_ENDPOINT") or _start_moto()
    return _endpoint


def _start_moto() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: (proc.terminate(), proc.wait(timeout=10)))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
            os.environ.update({k: os.environ.get(k, v) for k, v in CREDENTIALS.items()})
            return url
        except httpx.HTTPError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)


def new_bucket(prefix: str = "adapt-test") -> str:
    """A fresh bucket on the test endpoint (its name is unique to this run)."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint(), region_name=REGION).create_bucket(Bucket=name)
    return name
