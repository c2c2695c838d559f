"""Prometheus metrics counted by this API process: requests, predict latency, model-cache hits.
(Jobs, queue depth and training throughput are read when scraped: app.ops.StateCollector.)"""
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest

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




def render() -> bytes:
    """Every metric of this process, in the Prometheus text format."""
    return generate_latest(REGISTRY)
