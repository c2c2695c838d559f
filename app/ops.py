"""Operations endpoints: liveness, readiness (database, broker, storage), Prometheus metrics."""
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from app.db import get_engine, session_scope
from app.models import Job
from app.queue import producer
from app.storage import get_storage

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
    ok = all(v is None for v in checks.values())
    body = {"status": "ready" if ok else "unavailable",
            "checks": {k: "ok" if v is None else v for k, v in checks.items()}}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> str:
    """Prometheus text format."""
    with session_scope() as s:
        counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    lines = ["# HELP adapt_jobs Jobs by status.", "# TYPE adapt_jobs gauge"]
    for status in ("queued", "running", "cancelling", "succeeded", "failed", "cancelled"):
        lines.append(f'adapt_jobs{{status="{status}"}} {counts.get(status, 0)}')
    return "\n".join(lines) + "\n"
