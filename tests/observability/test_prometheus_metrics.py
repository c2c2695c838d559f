"""/metrics in the Prometheus text format, read back with prometheus_client's own parser: every
family is there, and the values move when a job runs and finishes and when predict is called."""
import math

import pytest
from helpers import toy_csv, wait_for_job
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Job
from app.observability import record_model_cache

pytestmark = pytest.mark.usefixtures("worker")
FAMILIES = {"adapt_jobs", "adapt_queue_depth", "adapt_training_samples_per_second",
            "adapt_predict_latency_seconds", "adapt_model_cache_hits",
            "adapt_model_cache_misses", "adapt_http_requests",
            "adapt_http_request_duration_seconds"}


def scrape(client) -> dict:
    res = client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(res.text)}


def value(families: dict, family: str, sample: str | None = None, **labels) -> float:
    """One sample's value (0 when the labelled series does not exist yet)."""
    return next((s.value for s in families[family].samples
                 if s.name == (sample or family) and all(s.labels.get(k) == v
                                                         for k, v in labels.items())), 0.0)


@pytest.fixture(scope="module")
def dataset(client):
    return client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(60))}).json()["id"]


def start_job(client, dataset, epochs: int) -> str:
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": dataset,
                                        "hyperparameters": {"epochs": epochs, "batch_size": 8}})
    assert res.status_code == 201, res.text
    return res.json()["id"]


def test_every_family_is_exposed_and_moves_with_jobs_and_predicts(client, dataset):
    before = scrape(client)
    assert FAMILIES <= set(before)
    assert not math.isnan(value(before, "adapt_queue_depth"))  # the broker answers
    job = wait_for_job(client, start_job(client, dataset, epochs=1))
    assert job["status"] == "succeeded", job["error"]
    after_job = scrape(client)
    assert value(after_job, "adapt_jobs", status="succeeded") >= \
        value(before, "adapt_jobs", status="succeeded") + 1

    route = "/v1/models/{model_id}/predict"
    res = client.post(f"/v1/models/{job['model']}/predict", json={"inputs": ["great film"]})
    assert res.status_code == 200, res.text
    after = scrape(client)
    count = "adapt_predict_latency_seconds_count"
    assert value(after, "adapt_predict_latency_seconds", count) == \
        value(after_job, "adapt_predict_latency_seconds", count) + 1
    assert value(after, "adapt_predict_latency_seconds", "adapt_predict_latency_seconds_sum") > \
        value(after_job, "adapt_predict_latency_seconds", "adapt_predict_latency_seconds_sum")
    labels = {"method": "POST", "route": route}
    assert value(after, "adapt_http_requests", "adapt_http_requests_total", status="200",
                 **labels) == value(after_job, "adapt_http_requests",
                                    "adapt_http_requests_total", status="200", **labels) + 1
    assert value(after, "adapt_http_request_duration_seconds",
                 "adapt_http_request_duration_seconds_count", **labels) >= 1
    # Raw ids never become label values: the route template does.
    assert not any(job["model"] in s.labels.get("route", "")
                   for s in after["adapt_http_requests"].samples)


def test_a_running_jobs_throughput_is_a_gauge_until_it_ends(client, dataset):
    job_id = start_job(client, dataset, epochs=100)
    wait_for_job(client, job_id, timeout=60, until=lambda j: j["status"] == "running" and (
        j["progress"] or {}).get("samples_per_second"))
    running = scrape(client)
    assert value(running, "adapt_training_samples_per_second", base_model="tiny-bert") > 0
    # summed per base model: no job (or tenant) ids in the labels
    assert all(set(s.labels) == {"base_model"}
               for s in running["adapt_training_samples_per_second"].samples)
    assert value(running, "adapt_jobs", status="running") >= 1
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert wait_for_job(client, job_id)["status"] == "cancelled"
    def others() -> int:  # jobs of earlier tests that the worker took up since
        with session_scope() as s:
            return s.scalar(select(func.count()).select_from(Job).where(
                Job.status == "running", Job.base_model == "tiny-bert", Job.id != job_id))

    before, ended, after = others(), scrape(client), others()
    assert before or after or not [s for s in ended["adapt_training_samples_per_second"].samples
                          if s.labels["base_model"] == "tiny-bert"]


def test_model_cache_counters(client):
    before = scrape(client)
    record_model_cache(True)
    record_model_cache(True)
    record_model_cache(False)
    after = scrape(client)
    hits, misses = "adapt_model_cache_hits_total", "adapt_model_cache_misses_total"
    assert value(after, "adapt_model_cache_hits", hits) == \
        value(before, "adapt_model_cache_hits", hits) + 2
    assert value(after, "adapt_model_cache_misses", misses) == \
        value(before, "adapt_model_cache_misses", misses) + 1
