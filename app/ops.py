"""Operations endpoints: liveness, readiness (database, broker, storage), Prometheus metrics."""
import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from app.db import get_engine, session_scope
from app.jobs import repository as jobs
from app.keys.auth import AdminCaller
from app.models import ACTIVE_STATUSES, FINAL_STATUSES
from app.observability import metrics as observability_metrics
from app.config import get_settings
from app.queue import known_queues, producer, queue_sizes, worker_queues
from app.storage import get_storage

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


def _check(name: str) -> str | None:
    try:
        if name == "database":
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        elif name == "broker":
            with producer().connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        else:
            get_storage().ping()
        return None
    except Exception as exc:  # noqa: BLE001 - every failure is reported as "down"
        return f"{exc.__class__.__name__}: {exc}"[:300]


@router.get("/readyz")
async def readyz() -> JSONResponse:
    """Database, broker and storage reachable (200), else 503 naming what is down."""
    checks = {n: await run_in_threadpool(_check, n) for n in ("database", "broker", "storage")}
    failed = [name for name, error in checks.items() if error is not None]
    if failed:
        log.warning("not ready: %s", ", ".join(f"{n} ({checks[n]})" for n in failed))
    ok = not failed
    body = {"status": "ready" if ok else "unavailable", "failed": failed,
            "checks": {k: "ok" if v is None else v for k, v in checks.items()}}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(_admin: AdminCaller) -> Response:
    """Prometheus text format (metric names in README, "Observability"). With auth on it needs
    an admin key (scrape with `Authorization: Bearer <admin key>`): 401 without, 403 otherwise."""
    return Response(observability_metrics.render(STATE), media_type=CONTENT_TYPE_LATEST)


class StateCollector(Collector):
    """Gauges read at scrape time: jobs by status, queue depth, samples/s of running jobs."""

    def describe(self):
        # Registration asks for the names; without this it would collect (query) at import.
        return [GaugeMetricFamily(name, "") for name in
                ("adapt_jobs", "adapt_training_samples_per_second", "adapt_queue_depth")]

    def collect(self):
        with session_scope() as s:
            counts = jobs.counts_by_status(s)
            running = jobs.running_progress(s)
        by_status = GaugeMetricFamily("adapt_jobs", "Jobs by status.", labels=["status"])
        for status in (*ACTIVE_STATUSES, *FINAL_STATUSES):
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        rate = GaugeMetricFamily("adapt_training_samples_per_second",
                                 "Training throughput of the running jobs, summed per base model "
                                 "(each job's last progress write); no job or tenant ids.",
                                 labels=["base_model"])
        per_model: dict[str, float] = {}
        for _job, base_model, progress in running:
            if (value := (progress or {}).get("samples_per_second")) is not None:
                per_model[base_model] = per_model.get(base_model, 0.0) + float(value)
        for base_model, value in sorted(per_model.items()):
            rate.add_metric([base_model], value)
        yield rate
        depth = GaugeMetricFamily("adapt_queue_depth", "Messages waiting in each training queue "
                                  "(NaN when the broker can't say).", labels=["queue"])
        gpus = get_settings().declared_workers.get("gpu", 1)
        for name, waiting in queue_sizes(known_queues(worker_queues("gpu", gpus))).items():
            depth.add_metric([name], float("nan") if waiting is None else waiting)
        yield depth


STATE = StateCollector()
REGISTRY.register(STATE)
