"""The job's life, in one place: every status change of a job is one function here.

A transition is always the same triple, written in one transaction:
1. a conditional UPDATE of the job row (it applies only from the expected status; a worker's
   writes are also *fenced* by its attempt number, so a worker that lost its lease changes nothing),
2. a `status` event in the job's event log,
3. for a final status, the webhook outbox rows (`job.succeeded|failed|cancelled`).

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲  │               │ ├──fail────────▶ failed
      │  │cancel         │ ├──requeue──▶ queued   (shutdown, transient error; same id, resumes)
      │  ▼               │ └──expire───▶ queued   (lease lapsed: the worker died)
      │ cancelled ◀──────┤cancel ─▶ cancelling ──finish / expire──▶ cancelled
      └─────────────── enqueue (create)       (cancel of an owned job whose lease lapsed: at once)

Crashes: an attempt that dies (its lease expires) or meets a transient error without having saved
a resume checkpoint past the one it started from counts one crash; the worker gives a job up after
ADAPT_MAX_ATTEMPTS crashes. Attempts that made progress never count, so a job killed many times
still finishes as long as each attempt moves it forward.

Functions called by the API take the request's session (the route commits it). Functions called
by a worker open their own unit of work: each is one transaction, and the caller holds no session
while it trains.
"""
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import queue
from app.db import after_commit, session_scope
from app.jobs import events
from app.jobs.schemas import JobOut
from app.models import FINAL_STATUSES, Checkpoint, Job, Model
from app.models.base import utcnow
from app.webhooks import outbox

log = logging.getLogger(__name__)
OWNED = ("running", "cancelling")  # a worker's attempt owns the job in these
RESEND_GRACE_S = 5.0  # a just-created job's message may not be countable yet


def _fenced(job_id: str, attempt: int):
    """An UPDATE of the job row that applies only while this attempt still owns it."""
    return update(Job).where(Job.id == job_id, Job.attempts == attempt, Job.status.in_(OWNED))


def _changed(session: Session, stmt, job_id: str, status: str, message: str, *,
             level: str = "info", data: dict[str, Any] | None = None) -> bool:
    """Run the conditional UPDATE that moves the job to `status`; when it applied, write the
    status event and, for a final status, the webhook outbox rows. True if it applied."""
    if session.execute(stmt.values(status=status)).rowcount != 1:
        return False
    events.record(session, job_id, message, type="status", level=level,
                  data={"status": status, **(data or {})})
    if status in FINAL_STATUSES:
        # populate_existing: the status was just written with a bulk UPDATE in this transaction.
        job = session.scalars(select(Job).where(Job.id == job_id)
                              .execution_options(populate_existing=True)).one()
        outbox.job_finished(session, job.tenant_id, job.id, status,
                            JobOut.model_validate(job).model_dump(mode="json"))
    return True


# -- the API's side ----------------------------------------------------------------------------
def enqueue(session: Session, job: Job) -> Job:
    """Insert a new job as queued; its task is sent only once the row has committed."""
    job.status, job.attempts, job.enqueued_at = "queued", 0, utcnow()
    session.add(job)
    session.flush()
    events.record(session, job.id, "job queued", type="status", data={"status": "queued"})
    name = queue.queue_for(job.resources)
    after_commit(session, lambda: queue.send_training(job.id, queue=name))
    return job


def cancel(session: Session, job: Job) -> bool:
    """A queued job is cancelled at once; a running one is asked to stop between steps (its
    worker ends it `cancelled`); one whose worker died (its lease lapsed: nobody would act on the
    request) is cancelled at once too. All are conditional, so a claim or a heartbeat at the same
    moment can't be lost. False when there was nothing to cancel (already finished, or already
    cancelling with a live worker)."""
    now = utcnow()
    if _changed(session, update(Job).where(Job.id == job.id, Job.status == "queued")
                .values(finished_at=now), job.id, "cancelled",
                "job cancelled before it started"):
        return True
    if _changed(session, update(Job).where(
            Job.id == job.id, Job.status.in_(OWNED), Job.lease_expires_at < now).values(
            finished_at=now, lease_expires_at=None, worker_id=None)
            # the session's copy is refreshed by the caller; SQLite hands back naive datetimes
            .execution_options(synchronize_session=False), job.id, "cancelled",
            "job cancelled (its worker had stopped answering: lease expired)"):
        return True
    return _changed(session, update(Job).where(Job.id == job.id, Job.status == "running"),
                    job.id, "cancelling", "cancel requested")


# -- a worker's side ---------------------------------------------------------------------------
class Claim(NamedTuple):
    attempt: int   # this attempt's number: every later write of the worker is fenced by it
    crashes: int   # earlier attempts that ended without progress


def claim(job_id: str, worker_id: str, lease_s: float) -> Claim | None:
    """queued → running: exactly one delivery of the task gets the attempt number. The attempt
    starts from the newest saved resume step (start_step), which tells later whether it advanced."""
    now = utcnow()
    with session_scope() as s:
        row = s.execute(select(Job.attempts, Job.crashes).where(
            Job.id == job_id, Job.status == "queued")).first()
        if row is None:
            return None
        before, crashes = row
        attempt = before + 1
        stmt = update(Job).where(Job.id == job_id, Job.status == "queued",
                                 Job.attempts == before).values(
            worker_id=worker_id, attempts=attempt, heartbeat_at=now, started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s), start_step=Job.saved_step)
        if not _changed(s, stmt, job_id, "running",
                        f"job started on {worker_id} (attempt {attempt})",
                        data={"attempt": attempt}):
            return None
    return Claim(attempt, crashes or 0)


def saved(job_id: str, attempt: int, step: int) -> bool:
    """A resume checkpoint at `step` is on disk: the attempt made progress up to there."""
    with session_scope() as s:
        return s.execute(_fenced(job_id, attempt).values(saved_step=step)).rowcount == 1


def _crashed(saved_step: int | None, start_step: int | None) -> int:
    """1 when an attempt that ends now made no progress (no resume checkpoint past its start)."""
    return 0 if (saved_step if saved_step is not None else -1) > (
        start_step if start_step is not None else -1) else 1


def renew_lease(job_id: str, attempt: int, lease_s: float) -> bool:
    """The heartbeat: extend this attempt's lease; False when it no longer owns the job."""
    now = utcnow()
    with session_scope() as s:
        return s.execute(_fenced(job_id, attempt).values(
            heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_s))).rowcount == 1


def record_progress(session: Session, job_id: str, attempt: int, progress: dict,
                    metrics: dict | None = None) -> bool:
    """Write live progress (and the latest evaluation) onto the row, inside the caller's unit of
    work (it also writes metric rows and events). False when this attempt lost the job."""
    values: dict[str, Any] = {"progress": progress}
    if metrics is not None:
        values["metrics"] = metrics
    return session.execute(_fenced(job_id, attempt).values(**values)).rowcount == 1


def ownership(session: Session, job_id: str, attempt: int) -> str:
    """What the attempt should do now: "run", "cancel" (a cancel was requested) or "lost"."""
    status, owner = session.execute(select(Job.status, Job.attempts)
                                    .where(Job.id == job_id)).one()
    if owner != attempt or status not in OWNED:
        return "lost"
    return "cancel" if status == "cancelling" else "run"


def requeue(job_id: str, attempt: int, message: str, countdown: float = 0,
            crash: bool = False) -> bool:
    """running → queued: the same job goes back to the queue and its next attempt resumes from
    the last checkpoint (a shutdown, a transient error). With crash (a transient error), the
    attempt counts as a crash unless it made progress."""
    with session_scope() as s:
        values: dict[str, Any] = {}
        if crash:
            saved_step, start_step = s.execute(select(Job.saved_step, Job.start_step).where(
                Job.id == job_id)).one()
            values["crashes"] = Job.crashes + _crashed(saved_step, start_step)
        done = _changed(s, _fenced(job_id, attempt).where(Job.status == "running").values(
            worker_id=None, lease_expires_at=None, enqueued_at=utcnow(), **values), job_id,
            "queued", message)
        resources = s.scalar(select(Job.resources).where(Job.id == job_id))
    if done:
        queue.send_training(job_id, countdown=countdown, queue=queue.queue_for(resources))
    return done


def fail(job_id: str, attempt: int, code: str, message: str) -> bool:
    """→ failed, with an error the user reads (code and message)."""
    error = {"code": code, "message": message}
    with session_scope() as s:
        return _changed(s, _fenced(job_id, attempt).values(
            finished_at=utcnow(), lease_expires_at=None, error=error), job_id, "failed",
            f"job failed: {message}", level="error", data={"error": error})


def cancelled(job_id: str, attempt: int) -> bool:
    """cancelling → cancelled: the worker stopped between steps as asked."""
    with session_scope() as s:
        return _changed(s, _fenced(job_id, attempt).values(
            finished_at=utcnow(), lease_expires_at=None), job_id, "cancelled", "job cancelled")


class NoCheckpoint(Exception):
    """Training ended before its first evaluation: there is no checkpoint to make a model of."""


def succeed(job_id: str, attempt: int, make_model: Callable[[Session, Checkpoint], Model],
            note: str = "") -> str | None:
    """→ succeeded: the model is made from the best checkpoint in the same transaction. Returns
    the model id, or None when the attempt lost the job meanwhile (the new owner finishes it)."""
    with session_scope() as s:
        ckpt = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id,
                                                  Checkpoint.is_best)).first()
        if ckpt is None:
            raise NoCheckpoint("Training ended before the first evaluation.")
        model = make_model(s, ckpt)
        if not _changed(s, _fenced(job_id, attempt).values(
                finished_at=utcnow(), lease_expires_at=None, model_id=model.id,
                metrics=ckpt.metrics, error=None), job_id, "succeeded",
                f"job succeeded{note}: model {model.id} from checkpoint {ckpt.id}"):
            s.rollback()
            return None
        return model.id


def preflight_done(job_id: str, attempt: int, report: dict) -> bool:
    """A dry run → succeeded, with what its pre-flight measured; no model is made."""
    with session_scope() as s:
        return _changed(s, _fenced(job_id, attempt).values(
            finished_at=utcnow(), lease_expires_at=None, preflight=report, error=None), job_id,
            "succeeded", f"dry run done: peak memory {report['peak_memory_bytes'] / 2**20:.0f} "
            f"MiB at batch size {report['batch_size']}, largest batch size that fits "
            f"{report['max_batch_size']}, about {report['seconds_total']:.0f}s in total",
            data={"preflight": report})


def batch_size_chosen(job_id: str, attempt: int, hyperparameters: dict, report: dict) -> bool:
    """A real job's batch_size "auto", resolved by its pre-flight: the job shows the number (and
    a later attempt resumes with it). False when this attempt lost the job."""
    with session_scope() as s:
        if s.execute(_fenced(job_id, attempt).values(
                hyperparameters=hyperparameters, preflight=report)).rowcount != 1:
            return False
        events.record(s, job_id, f"batch_size auto: {hyperparameters['batch_size']} (the "
                      f"pre-flight's largest that fits is {report['max_batch_size']})",
                      data={"batch_size": hyperparameters["batch_size"], "preflight": report})
        return True


def expire_leases() -> dict[str, str]:
    """Jobs whose lease lapsed (their worker died): running → queued, to be resumed by any
    worker; cancelling → cancelled. Returns {re-queued job id: its queue} (the caller sends
    them)."""
    now, requeued = utcnow(), {}
    with session_scope() as s:
        expired = s.execute(select(Job.id, Job.status, Job.attempts, Job.worker_id, Job.crashes,
                                   Job.saved_step, Job.start_step, Job.resources).where(
            Job.status.in_(OWNED), Job.lease_expires_at < now)).all()
        for job_id, status, attempt, worker, crashes, saved_step, start_step, res in expired:
            to = "queued" if status == "running" else "cancelled"
            crashed = _crashed(saved_step, start_step)
            stmt = update(Job).where(Job.id == job_id, Job.attempts == attempt,
                                     Job.status == status, Job.saved_step.is_(saved_step)
                                     if saved_step is None else Job.saved_step == saved_step
                                     ).values(
                worker_id=None, lease_expires_at=None, enqueued_at=now,
                **({"finished_at": now} if to == "cancelled" else
                   {"crashes": (crashes or 0) + crashed}))
            progress = ("" if to == "cancelled" else f", it saved step {saved_step}"
                        if not crashed else f", no progress: crash {(crashes or 0) + 1}")
            if _changed(s, stmt, job_id, to, f"worker {worker} stopped answering (lease expired "
                        f"on attempt {attempt}{progress}); job "
                        f"{'re-queued' if to == 'queued' else to}", level="warning",
                        data={"attempt": attempt, "crashes": (crashes or 0) + crashed}
                        ) and to == "queued":
                requeued[job_id] = queue.queue_for(res)
    return requeued


def queued_without_message() -> dict[str, str]:
    """Queued jobs to send again, {job id: its queue}: those of every queue where the broker
    holds fewer messages than the database owes."""
    cutoff = utcnow() - timedelta(seconds=RESEND_GRACE_S)
    with session_scope() as s:
        rows = s.execute(select(Job.id, Job.resources).where(
            Job.status == "queued", Job.enqueued_at < cutoff).order_by(Job.id)).all()
    by_queue: dict[str, list[str]] = {}
    for job_id, resources in rows:
        by_queue.setdefault(queue.queue_for(resources), []).append(job_id)
    sizes = queue.queue_sizes(list(by_queue)) if by_queue else {}
    lost = {}
    for name, owed in by_queue.items():
        if (waiting := sizes[name]) is None or waiting < len(owed):
            lost.update(dict.fromkeys(owed, name))
    if lost:
        with session_scope() as s:
            s.execute(update(Job).where(Job.id.in_(lost), Job.status == "queued")
                      .values(enqueued_at=utcnow()))
    return lost
