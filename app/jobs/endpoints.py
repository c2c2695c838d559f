import asyncio
import csv
import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (FileResponse, JSONResponse, PlainTextResponse,
                               StreamingResponse)
from starlette.background import BackgroundTask

from app.config import Settings, get_settings
from app.keys.auth import Tenant, tenant_of
from app.db import DbSession, session_scope
from app.deps import SettingsDep, StorageDep
from app.idempotency import IdempotencyDep, request_hash
from app.jobs import repository, service
from app.jobs.archive import zip_directory, zip_stream
from app.jobs.schemas import (CheckpointList, CheckpointOut, EventList, EventOut, JobCreate,
                              JobOut, MetricList)
from app.models import FINAL_STATUSES
from app.pagination import Page, page_params
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES, ListOf, links

router = APIRouter(prefix="/v1", tags=["jobs"], responses=ERROR_RESPONSES)
JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]


@router.post("/jobs", status_code=201, response_model=JobOut,
             responses=links("job_id", "get_job", "cancel_job", "job_events", "job_metrics",
                             "job_checkpoints"),
             dependencies=[rate_limit("job", "rate_limit_jobs_per_minute")])
def create_job(req: JobCreate, session: DbSession, settings: SettingsDep, tenant: Tenant,
               idem: IdempotencyDep):
    """Start a fine-tune job; it is queued and picked up by a worker."""
    return idem.run(session, tenant, request_hash("job", req.model_dump(mode="json")),
                    lambda: service.out(session, settings,
                                        service.create(session, settings, tenant, req))
                    .model_dump(mode="json"))


# The hot reads: async routes making one thread-pool hop for the whole read (Core queries on an
# autocommit connection; no session, no commit), answering the JSON response_model would. The
# caller is resolved in the route (tenant_of), not by a chain of dependencies: FastAPI's solving
# of each one costs the event loop more than the key cache lookup itself.
@router.get("/jobs", response_model=ListOf[JobOut])
async def list_jobs(request: Request, page: Annotated[Page, Depends(page_params)],
                    status: JobStatus | None = None):
    tenant = await tenant_of(request)
    return JSONResponse(await run_in_threadpool(service.read_page, get_settings(), tenant, page,
                                                status))


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, request: Request):
    """The job; while it is queued, `queue` says its place and how many workers take jobs."""
    tenant = await tenant_of(request)
    return JSONResponse(await run_in_threadpool(service.read_one, get_settings(), tenant, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, session: DbSession, settings: SettingsDep, tenant: Tenant):
    """Cancel a queued or running job (409 when it has already finished)."""
    return service.out(session, settings, service.cancel(session, tenant, job_id))


@router.get("/jobs/{job_id}/events", response_model=EventList,
            responses={200: {"content": {"text/event-stream": {}}}})
def job_events(job_id: str, request: Request, session: DbSession, settings: SettingsDep,
               tenant: Tenant,
               after: Annotated[int, Query(ge=0)] = 0,
               last_event_id: Annotated[str | None, Header()] = None):
    """The job's events, oldest first; with Accept: text/event-stream they stream live (SSE)."""
    job = service.get(session, tenant, job_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
        return StreamingResponse(_sse(job.id, start, request, settings),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return EventList(data=[EventOut.model_validate(e)
                           for e in repository.events_after(session, job.id, after)])


def _poll(job_id: str, after: int, settings: Settings) -> tuple[list[dict], dict | None, bool]:
    with session_scope() as s:
        rows = [EventOut.model_validate(e).model_dump(mode="json")
                for e in repository.events_after(s, job_id, after)]
        status, progress = repository.status_and_progress(s, job_id)
        if status == "queued":  # its place in the queue and the workers, as JobOut.queue
            queue = service.queue_of(s, settings, [job_id])[job_id]
            progress = {**(progress or {}), "queue": queue.model_dump()}
        return rows, progress, status in FINAL_STATUSES


async def _sse(job_id: str, after: int, request: Request, settings: Settings):
    """Follow the event log until the job has finished and every event was sent. Progress
    (step, ETA, loss; while queued also `queue`: position, workers) goes out as `progress` events
    without an id: live state, not part of the resumable log, so Last-Event-ID still names the
    last logged event."""
    progress = None
    while not await request.is_disconnected():
        rows, now, finished = await run_in_threadpool(_poll, job_id, after, settings)
        for row in rows:
            after = row["id"]
            yield f"id: {row['id']}\nevent: {row['type']}\ndata: {json.dumps(row)}\n\n"
        if now is not None and now != progress:
            progress = now
            yield f"event: progress\ndata: {json.dumps(now)}\n\n"
        if finished and not rows:
            return
        if not rows:
            yield ": keep-alive\n\n"
        await asyncio.sleep(0.5)


@router.get("/jobs/{job_id}/metrics", response_model=MetricList,
            responses={200: {"content": {"text/csv": {}}}})
def job_metrics(job_id: str, session: DbSession, tenant: Tenant,
                format: Literal["json", "csv"] = "json"):
    """Every logged value (step, epoch, name, value); ?format=csv for a CSV file."""
    rows = repository.metrics(session, service.get(session, tenant, job_id).id)
    if format == "json":
        return {"object": "list", "data": rows}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "epoch", "name", "value"])
    writer.writerows((m.step, m.epoch, m.name, m.value) for m in rows)
    return PlainTextResponse(out.getvalue(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{job_id}-metrics.csv"'})


@router.get("/jobs/{job_id}/checkpoints", response_model=CheckpointList)
def job_checkpoints(job_id: str, session: DbSession, tenant: Tenant):
    job = service.get(session, tenant, job_id)
    return CheckpointList(data=[CheckpointOut.model_validate(c)
                                for c in repository.checkpoints(session, job.id)])


@router.get("/checkpoints/{checkpoint_id}/content", response_class=FileResponse,
            responses={200: {"content": {"application/zip": {}}}})
def checkpoint_content(checkpoint_id: str, session: DbSession, storage: StorageDep,
                       settings: SettingsDep, tenant: Tenant):
    """The checkpoint as a ZIP of a directory that transformers loads as it is."""
    ckpt = service.checkpoint(session, tenant, checkpoint_id)
    if storage.remote:
        return StreamingResponse(zip_stream(storage, ckpt.storage_key), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{ckpt.id}.zip"'})
    path = zip_directory(storage.local_path(ckpt.storage_key), storage.staging_dir())
    return FileResponse(path, media_type="application/zip", filename=f"{ckpt.id}.zip",
                        background=BackgroundTask(lambda: path.unlink(missing_ok=True)))
