"""Structured logs: one JSON object a line, an access line per request that carries the request's
X-Request-ID (echoed back), and the job id on lines logged while a job runs."""
import io
import json
import logging
import re

import pytest

from app.observability import configure_logging, log_context


@pytest.fixture
def json_logs():
    """The service's JSON logging, into a buffer; the tests' text format is restored after."""
    buf = io.StringIO()
    configure_logging("json", stream=buf)
    yield lambda: [json.loads(line) for line in buf.getvalue().splitlines()]
    configure_logging("text")


def test_the_request_id_is_echoed_and_in_the_json_access_line(client, json_logs):
    res = client.get("/v1/jobs/job_nope", headers={"X-Request-ID": "req-abc.123"})
    assert res.status_code == 404 and res.headers["x-request-id"] == "req-abc.123"
    fresh = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)  # none given: one is made
    unsafe = client.get("/healthz", headers={"X-Request-ID": "<script> x"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])

    access = [line for line in json_logs() if line["logger"] == "adapt.access"]
    [mine] = [line for line in access if line.get("request_id") == "req-abc.123"]
    assert mine["method"] == "GET" and mine["route"] == "/v1/jobs/{job_id}"
    assert mine["path"] == "/v1/jobs/job_nope" and mine["status"] == 404
    assert mine["level"] == "info" and mine["ts"].endswith("Z")
    assert isinstance(mine["duration_ms"], float) and mine["duration_ms"] >= 0
    assert [line["route"] for line in access if line.get("request_id") == fresh] == ["/healthz"]


def test_lines_logged_while_a_job_runs_carry_its_id(json_logs):
    with log_context(job="job_abc"):
        logging.getLogger("workers.runner").warning("step %d slow", 7, extra={"step": 7})
    logging.getLogger("workers.runner").info("idle")
    first, second = [line for line in json_logs() if line["logger"] == "workers.runner"]
    assert first["job_id"] == "job_abc" and first["message"] == "step 7 slow"
    assert first["step"] == 7 and first["level"] == "warning"
    assert "job_id" not in second and second["message"] == "idle"


def test_a_worker_logs_with_the_job_id(client, worker):
    """The real worker (text format in tests) tags the runner's lines with the job id."""
    from helpers import toy_csv, wait_for_job

    ds = client.post("/v1/datasets", files={"file": ("t.csv", toy_csv(20))}).json()["id"]
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds,
                                        "hyperparameters": {"epochs": 1, "batch_size": 8}}).json()
    wait_for_job(client, job["id"])
    lines = [line for line in worker.log_path.read_text().splitlines()
             if "workers.runner" in line and "attempt 1 started" in line]
    assert any(line.endswith(f"[job_id={job['id']}]") for line in lines)
