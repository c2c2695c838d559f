"""A callback that writes what the recipe observes onto the job's rows, and requests a stop when
the job is cancelled."""
import logging
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import session_scope
from app.ids import new_id
from app.jobs import events
from app.ml.callbacks import Callback, Control, TrainState
from app.models import Checkpoint, Job, JobMetric
from app.models.base import utcnow
from app.storage import LocalStorage

log = logging.getLogger(__name__)
LEASE_S = 120  # a running job's claim lasts this long past its last heartbeat


def insert_metrics(session: Session, job_id: str, step: int, epoch: float, values: dict) -> None:
    """Idempotent: a re-run of the same step leaves the first row and adds no duplicate."""
    rows = [{"job_id": job_id, "step": step, "epoch": epoch, "name": k, "value": float(v)}
            for k, v in values.items()]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(JobMetric).values(rows).on_conflict_do_nothing(
        index_elements=["job_id", "step", "name"]))


class JobRecorder(Callback):
    def __init__(self, job_id: str, tenant: str, worker_id: str, storage: LocalStorage,
                 interval_s: float):
        self.job_id, self.tenant, self.worker_id = job_id, tenant, worker_id
        self.storage, self.interval_s = storage, interval_s
        self._last_write = 0.0
        self.checkpoints: list[str] = []
        self.best_checkpoint: str | None = None

    def _progress(self, state: TrainState) -> dict:
        remaining = state.total_steps - state.step
        rate = state.elapsed_s / state.step if state.step else None
        return {"epoch": state.epoch, "epochs": state.epochs, "step": state.step,
                "total_steps": state.total_steps,
                "eta_seconds": round(rate * remaining, 1) if rate is not None else None,
                "samples_per_second": round(state.samples_seen / state.elapsed_s, 2)
                if state.elapsed_s else None}

    def _heartbeat(self, session: Session, state: TrainState) -> str:
        """Write progress and extend the lease; returns the job's current status."""
        now = utcnow()
        session.execute(update(Job).where(Job.id == self.job_id).values(
            progress=self._progress(state), heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=LEASE_S)))
        return session.get(Job, self.job_id, populate_existing=True).status

    def on_train_begin(self, state: TrainState, control: Control) -> None:
        with session_scope() as s:
            self._heartbeat(s, state)
            events.record(s, self.job_id, f"training {state.epochs} epoch(s), "
                          f"{state.total_steps} steps", data=self._progress(state))

    def on_step_end(self, state: TrainState, control: Control) -> None:
        now = time.monotonic()
        if now - self._last_write < self.interval_s and state.step != state.total_steps:
            return
        self._last_write = now
        with session_scope() as s:
            status = self._heartbeat(s, state)
            epoch = (state.epoch - 1) + (state.step - (state.epoch - 1) * state.steps_per_epoch) \
                / state.steps_per_epoch
            insert_metrics(s, self.job_id, state.step, round(epoch, 4),
                           {"train_loss": state.train_loss})
        if status != "running":
            control.stop("cancelled")

    def on_evaluate(self, state: TrainState, metrics: dict, report: dict, control: Control) -> None:
        with session_scope() as s:
            insert_metrics(s, self.job_id, state.step, state.epoch, metrics)
            s.execute(update(Job).where(Job.id == self.job_id).values(metrics=metrics))
            events.record(s, self.job_id, f"epoch {state.epoch}/{state.epochs} done: " + ", ".join(
                f"{k} {v:.4f}" for k, v in sorted(metrics.items())), type="metrics",
                data={"epoch": state.epoch, "step": state.step, **metrics})

    def on_checkpoint(self, state: TrainState, path: Path, metrics: dict, report: dict,
                      is_best: bool) -> None:
        ckpt_id = new_id("ckpt")
        key = f"checkpoints/{self.tenant}/{self.job_id}/{ckpt_id}"
        size = self.storage.put_dir(key, path)
        with session_scope() as s:
            if is_best:
                s.execute(update(Checkpoint).where(Checkpoint.job_id == self.job_id)
                          .values(is_best=False))
            s.add(Checkpoint(id=ckpt_id, tenant_id=self.tenant, job_id=self.job_id,
                             step=state.step, epoch=state.epoch, metrics=metrics,
                             evaluation=report, is_best=is_best, bytes=size, storage_key=key))
            events.record(s, self.job_id, f"checkpoint {ckpt_id} saved at step {state.step}"
                          + (" (best so far)" if is_best else ""),
                          data={"checkpoint": ckpt_id, "step": state.step, "is_best": is_best})
        self.checkpoints.append(ckpt_id)
        if is_best:
            self.best_checkpoint = ckpt_id
