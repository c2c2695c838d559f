"""Operations endpoints: liveness, readiness (database, broker, storage), Prometheus metrics."""
import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from app.db import get_engine
from app.observability import metrics as observability_metrics
from app.queue import producer
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
def metrics() -> Response:
    """Prometheus text format (metric names in README, "Observability")."""
    return Response(observability_metrics.render(), media_type=CONTENT_TYPE_LATEST)
