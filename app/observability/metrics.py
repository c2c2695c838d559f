"""Prometheus metrics. Jobs, queue depth and training throughput are read when scraped (the
database and the broker are the truth); request, predict and model-cache figures are counted by
this API process."""
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")

HTTP_REQUESTS = Counter("adapt_http_requests", "HTTP requests by route template and status.",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("adapt_http_request_duration_seconds",
                         "HTTP request duration by route template, seconds.", ["method", "route"])
PREDICT_LATENCY = Histogram("adapt_predict_latency_seconds",
                            "Predict requests that succeeded: seconds from the request's start "
                            "to its predictions (a model load on a cache miss included).",
                            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
MODEL_CACHE_HITS = Counter("adapt_model_cache_hits", "Predicts served by an already loaded model.")
MODEL_CACHE_MISSES = Counter("adapt_model_cache_misses", "Predicts that had to load their model.")


def record_model_cache(hit: bool) -> None:
    """Count one model-cache lookup."""
    (MODEL_CACHE_HITS if hit else MODEL_CACHE_MISSES).inc()


def observe_predict(seconds: float) -> None:
    """One predict request that succeeded, seconds from its start to its predictions."""
    PREDICT_LATENCY.observe(seconds)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


class StateCollector(Collector):
    """Gauges read at scrape time: jobs by status, queue depth, samples/s of running jobs."""

    def describe(self):
        # Registration asks for the names; without this it would collect (query) at import.
        return [GaugeMetricFamily(name, "") for name in
                ("adapt_jobs", "adapt_training_samples_per_second", "adapt_queue_depth")]

    def collect(self):
        from app.db import session_scope
        from app.models import Job
        from app.queue import queue_size

        with session_scope() as s:
            counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            running = s.execute(select(Job.id, Job.base_model, Job.progress)
                                .where(Job.status == "running")).all()
        jobs = GaugeMetricFamily("adapt_jobs", "Jobs by status.", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        rate = GaugeMetricFamily("adapt_training_samples_per_second",
                                 "Training throughput of each running job (its last progress "
                                 "write).", labels=["job", "base_model"])
        for job, base_model, progress in running:
            if (value := (progress or {}).get("samples_per_second")) is not None:
                rate.add_metric([job, base_model], value)
        yield rate
        waiting = queue_size()
        yield GaugeMetricFamily("adapt_queue_depth", "Messages waiting in the training queue "
                                "(NaN when the broker can't say).",
                                value=float("nan") if waiting is None else waiting)


REGISTRY.register(StateCollector())


def render() -> bytes:
    """Every metric of this process, in the Prometheus text format."""
    return generate_latest(REGISTRY)
