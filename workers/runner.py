"""Runs one job: claim it → read its rows (then close the session) → build the recipe → train →
record the outcome. Every status change goes through app.jobs.lifecycle; transient errors
re-queue with backoff, deterministic ones fail at once with a clear error."""
import logging
import shutil
from pathlib import Path

import torch

from app import janitor
from app.config import get_settings
from app.datasets.parsing import DatasetInvalid
from app.jobs import lifecycle
from app.ml import checkpointing
from app.ml.callbacks import PeriodicSave
from app.ml.feature_cache import FeatureCache
from app.ml.recipe import TrainResult, build_recipe
from app.models_api.service import create_from_checkpoint
from app.observability import log_context
from app.storage import get_storage
from workers.callbacks import JobRecorder
from workers.lease import Lease
from workers.plan import JobFailed, is_transient, load_splits, read_plan

log = logging.getLogger(__name__)


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
        _record(job_id, attempt, _train(job_id, lease, work_dir))
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


def _train(job_id: str, lease: Lease, work_dir: Path) -> TrainResult:
    settings = get_settings()
    plan = read_plan(job_id, settings)
    splits = load_splits(plan)
    recorder = JobRecorder(job_id, plan.tenant, lease, get_storage(), settings.progress_interval_s)
    cache = (FeatureCache(settings.data_dir / "cache" / "features", settings.feature_cache_bytes)
             if settings.feature_cache_bytes else None)
    recipe = build_recipe(
        plan.config, plan.base, splits, work_dir=work_dir,
        callbacks=[PeriodicSave(settings.checkpoint_every_steps, settings.checkpoint_every_s),
                   recorder],
        resume_dir=plan.resume_dir, keep_last=settings.keep_last_checkpoints,
        feature_cache=cache, images_zip=plan.train.path if plan.train.format == "zip" else None)
    try:
        recipe.setup(resume_from=checkpointing.latest(plan.resume_dir))
        recorder.setup_done(recipe.feature_stats, recipe.resumed_step, recipe.state)
        return recipe.train()
    finally:
        recipe.cleanup()


def _record(job_id: str, attempt: int, result: TrainResult) -> None:
    """Write how training ended onto the job row."""
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
        lifecycle.succeed(job_id, attempt, create_from_checkpoint, note)


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
