"""Prometheus metrics counted by the API processes: requests, predict latency, model-cache hits.
(Jobs, queue depth and training throughput are read when scraped: app.ops.StateCollector.)

With several API processes (adapt-serve --api-workers N) each process writes its counts to files
in PROMETHEUS_MULTIPROC_DIR (set by app.serve before they start) and /metrics adds them all up,
whichever process answers the scrape."""
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

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




class _LoadedModels:
    """Memory of the loaded models, read from the model cache when scraped: each shared backbone
    once, and each model's own weights (a head, a LoRA adapter, or a whole copy)."""

    def __init__(self):
        self.source: Callable[[], tuple[list, list]] | None = None

    def collect(self):
        backbones, models = self.source() if self.source else ([], [])
        bb = GaugeMetricFamily("adapt_loaded_backbone_bytes", "Bytes of each loaded shared "
                               "encoder (counted once for all the models on it).",
                               labels=["base_model", "fingerprint", "tokenizer"])
        for labels, n in backbones:
            bb.add_metric([labels["base_model"], labels["fingerprint"],
                           labels.get("tokenizer", "")], n)
        own = GaugeMetricFamily("adapt_loaded_model_bytes", "Bytes of each loaded model's own "
                                "weights: its head, its LoRA adapter, or (whole) all of them.",
                                labels=["model", "kind"])
        for labels, n in models:
            own.add_metric([labels["model"], labels["kind"]], n)
        yield bb
        yield own


_LOADED = _LoadedModels()
REGISTRY.register(_LOADED)


def watch_loaded_models(source: Callable[[], tuple[list, list]]) -> None:
    """Report the memory of the models source() lists ((labels, bytes) of backbones, of models)."""
    _LOADED.source = source


def prepare_multiprocess(directory: Path) -> None:
    """Before starting several API processes: an empty directory for their counts (a previous
    run's files would be added in), named in the environment they inherit."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return  # the operator's own choice (and its cleaning)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def render(shared: Collector) -> bytes:
    """Every metric in the Prometheus text format: this process's (with several API processes,
    all of theirs added up) and `shared`, the gauges read at scrape time."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(shared)
    registry.register(_LOADED)
    return generate_latest(registry)
