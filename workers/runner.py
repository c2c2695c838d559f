"""Runs one job: claim it → read its rows (then close the session) → build the recipe → train →
record the outcome. Every status change goes through app.jobs.lifecycle; transient errors
re-queue with backoff, deterministic ones fail at once with a clear error."""
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from app import janitor
from app.config import get_settings
from app.datasets.parsing import DatasetInvalid
from app.jobs import lifecycle
from app.ml.recipe import TrainResult
from app.observability import log_context
from workers import distributed
from workers.compression import MakeModel, model_maker
from workers.lease import Lease
from workers.plan import JobFailed, is_transient, load_splits, read_plan
from workers.preflight import run_preflight, with_auto_batch_size
from workers.training import train_plan

log = logging.getLogger(__name__)
Maker = Callable[[], MakeModel]  # → how the job's model is made (measured, for distill/prune)


def run_job(job_id: str, worker_id: str) -> None:
    """Claim and run the job; every outcome ends on the job row. Lines logged meanwhile carry
    the job id."""
    with log_context(job=job_id):
        _run_job(job_id, worker_id)


def _run_job(job_id: str, worker_id: str) -> None:
    settings = get_settings()
    claimed = lifecycle.claim(job_id, worker_id, settings.lease_s)
    if claimed is None:
        log.info("job %s is not queued (already claimed, cancelled or gone): skipping", job_id)
        return
    attempt = claimed.attempt
    log.info("job %s: attempt %d started on %s", job_id, attempt, worker_id)
    if claimed.crashes >= settings.max_attempts:  # attempts that made progress don't count
        lifecycle.fail(job_id, attempt, "too_many_attempts", f"Gave up after {claimed.crashes} "
                       "attempts that made no progress (see the job's events).")
        return
    lease = Lease(job_id, attempt, settings.lease_s).start()
    # under the data dir, named for this process: the janitor removes it if the worker dies
    work_dir = janitor.owned_dir(settings.data_dir / "work", f"{job_id}-")
    try:
        _record(job_id, attempt, *_train(job_id, lease, work_dir))
    except JobFailed as exc:
        lifecycle.fail(job_id, attempt, exc.code, exc.message)
    except DatasetInvalid as exc:
        lifecycle.fail(job_id, attempt, "dataset_invalid", exc.message)
    except lifecycle.NoCheckpoint as exc:
        lifecycle.fail(job_id, attempt, "no_checkpoint", str(exc))
    except torch.OutOfMemoryError:
        lifecycle.fail(job_id, attempt, "out_of_memory",
                       "Out of memory: lower hyperparameters.batch_size or max_length.")
    except Exception as exc:
        _handle_unexpected(job_id, attempt, exc, settings.max_attempts - claimed.crashes)
    finally:
        lease.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def _train(job_id: str, lease: Lease, work_dir: Path) -> tuple[TrainResult | dict, Maker]:
    """Train in this process, or launch hyperparameters.processes processes (one job, DDP); a
    dry run gives its pre-flight report instead. batch_size "auto" is resolved first."""
    plan = read_plan(job_id, get_settings())
    splits = load_splits(plan)
    if plan.dry_run:
        return run_preflight(plan, splits, work_dir), lambda: None
    if plan.config.hyperparameters["batch_size"] == "auto":
        plan = with_auto_batch_size(plan, splits, work_dir, lease.attempt)
    if plan.config.hyperparameters.get("processes", 1) > 1:
        result = distributed.launch(plan, splits, lease, work_dir)
    else:
        result = train_plan(plan, splits, lease, work_dir)
    return result, lambda: model_maker(plan, splits)


def _record(job_id: str, attempt: int, result: TrainResult | dict,
            make_model: Maker) -> None:
    """Write how training (or a dry run's pre-flight: a dict) ended onto the job row."""
    if isinstance(result, dict):
        lifecycle.preflight_done(job_id, attempt, result)
        return
    reason = result.stop_reason
    if reason == "cancelled":
        lifecycle.cancelled(job_id, attempt)
    elif reason == "shutdown":
        lifecycle.requeue(job_id, attempt, f"worker shutting down: checkpoint at step "
                          f"{result.state.step} saved, job re-queued")
    elif reason == "lease_lost":
        log.warning("job %s attempt %s lost its lease: stopped", job_id, attempt)
    else:
        note = " (early stopping)" if reason == "early_stopping" else ""
        lifecycle.succeed(job_id, attempt, make_model(), note)


def _handle_unexpected(job_id: str, attempt: int, exc: Exception, crashes_left: int) -> None:
    if is_transient(exc) and crashes_left > 1:
        delay = min(300.0, 5.0 * 2 ** (attempt - 1))
        log.warning("job %s: transient error, retrying in %.0fs: %s", job_id, delay, exc)
        try:
            lifecycle.requeue(job_id, attempt, f"transient error ({exc.__class__.__name__}: "
                              f"{str(exc)[:200]}); retrying in {delay:.0f}s", countdown=delay,
                              crash=True)
        except Exception:  # noqa: BLE001 - the database is down: the lease expiry re-queues
            log.exception("job %s: could not re-queue; its lease will expire", job_id)
        return
    log.exception("job %s failed", job_id)
    lifecycle.fail(job_id, attempt, "training_error",
                   f"Training failed: {exc.__class__.__name__}: {exc}"[:1000])
