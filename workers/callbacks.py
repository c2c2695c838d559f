"""A callback that writes what the recipe observes onto the job's rows (through
app.jobs.lifecycle, fenced by the attempt), and requests a stop when the job is cancelled, its
worker is shutting down, or its lease was lost. Each hook is one unit of work."""
import logging
import time
from pathlib import Path

from app.db import session_scope
from app.ids import new_id
from app.jobs import events, lifecycle, repository
from app.ml.callbacks import Callback, Control, TrainState
from app.models import Checkpoint
from app.predict_activity import PredictActivity
from app.storage import Storage
from workers import shutdown
from workers.lease import Lease
from workers.resume import ResumeCheckpoints

log = logging.getLogger(__name__)
CANCEL_POLL_S = 0.25  # how often the job row is read for a cancel request


def progress_of(state: TrainState) -> dict:
    remaining = state.total_steps - state.step
    rate = state.elapsed_s / state.step if state.step else None
    return {"epoch": state.epoch, "epochs": state.epochs, "step": state.step,
            "total_steps": state.total_steps,
            "eta_seconds": round(rate * remaining, 1) if rate is not None else None,
            "samples_per_second": round(state.samples_seen / state.elapsed_s, 2)
            if state.elapsed_s else None,
            "train_loss": round(state.train_loss, 4) if state.step else None,
            "precision": state.precision}


class JobRecorder(Callback):
    def __init__(self, job_id: str, tenant: str, lease: Lease, storage: Storage,
                 interval_s: float, resume: ResumeCheckpoints | None = None):
        self.job_id, self.tenant, self.lease = job_id, tenant, lease
        self.storage, self.interval_s, self.resume = storage, interval_s, resume
        self._last_write = self._last_poll = 0.0

    def setup_done(self, feature_stats: dict | None, resumed_step: int | None,
                   state: TrainState, data_report: dict | None = None,
                   precision_trial: dict | None = None) -> None:
        """What setup found: texts longer than max_length (and whether they are chunked), encoder
        features from the shared cache, a resumed step, the precision measured faster."""
        with session_scope() as s:
            if trial := precision_trial:
                ms = trial["ms_per_step"]
                events.record(s, self.job_id, f"training in {trial['chosen']}: a step of the "
                              f"first batch took {ms['fp32']} ms in fp32, "
                              f"{ms.get('bf16')} ms in bf16 (measured in {trial['seconds']}s)",
                              data=trial)
            if (data := data_report) and data["longer_than_max_length"]:
                how = ("read in overlapping windows (chunking)" if data["chunking"]
                       else "cut at max_length")
                events.record(s, self.job_id, f"{data['longer_than_max_length']} of "
                              f"{data['examples']} texts are longer than max_length "
                              f"({data['max_length']} tokens): {how}; "
                              f"{data['truncated_examples']} truncated", data=data)
            if transfer := (data_report or {}).get("transfer"):
                events.record(s, self.job_id, f"transfer set: the teacher labels "
                              f"{transfer['used']} of its {transfer['texts']} texts (the rest "
                              "are training or validation texts, or repeats)", data=transfer)
            if stats := feature_stats:
                events.record(s, self.job_id, f"encoder features for {stats['examples']} "
                              f"examples: {stats['examples'] - stats['computed']} from the shared "
                              f"cache, {stats['computed']} computed in {stats['seconds']}s",
                              data=stats)
            if resumed_step is not None:
                events.record(s, self.job_id, f"resumed from step {resumed_step}/"
                              f"{state.total_steps} (epoch {state.epoch}) on attempt "
                              f"{self.lease.attempt}",
                              data={"step": resumed_step, "attempt": self.lease.attempt})

    def on_train_begin(self, state: TrainState, control: Control) -> None:
        with session_scope() as s:
            lifecycle.record_progress(s, self.job_id, self.lease.attempt, progress_of(state))
            events.record(s, self.job_id, f"training {state.epochs} epoch(s), "
                          f"{state.total_steps} steps", data=progress_of(state))

    def on_step_end(self, state: TrainState, control: Control) -> None:
        if shutdown.requested.is_set():
            control.should_save = True
            control.stop("shutdown")
            return
        if self.lease.lost.is_set():
            control.stop("lease_lost")
            return
        now = time.monotonic()
        write = now - self._last_write >= self.interval_s or state.step == state.total_steps
        if not write and now - self._last_poll < CANCEL_POLL_S:
            return
        self._last_poll = now
        with session_scope() as s:
            if write:
                self._last_write = now
                if not lifecycle.record_progress(s, self.job_id, self.lease.attempt,
                                                 progress_of(state)):
                    self.lease.lost.set()
                epoch_frac = (state.epoch - 1) + (
                    state.step - (state.epoch - 1) * state.steps_per_epoch) / state.steps_per_epoch
                repository.insert_metrics(s, self.job_id, state.step, round(epoch_frac, 4),
                                          {"train_loss": state.train_loss})
            now_is = lifecycle.ownership(s, self.job_id, self.lease.attempt)
        if now_is == "lost":
            control.stop("lease_lost")
        elif now_is == "cancel":
            control.stop("cancelled")

    def on_evaluate(self, state: TrainState, metrics: dict, report: dict, control: Control) -> None:
        with session_scope() as s:
            repository.insert_metrics(s, self.job_id, state.step, state.epoch, metrics)
            lifecycle.record_progress(s, self.job_id, self.lease.attempt, progress_of(state),
                                      metrics=metrics)
            events.record(s, self.job_id, f"epoch {state.epoch}/{state.epochs} done: " + ", ".join(
                f"{k} {v:.4f}" for k, v in sorted(metrics.items())), type="metrics",
                data={"epoch": state.epoch, "step": state.step, **metrics})

    def on_checkpoint(self, state: TrainState, path: Path, metrics: dict, report: dict,
                      is_best: bool) -> None:
        with session_scope() as s:
            # A re-run of the same epoch (resumed after a kill) replaces, never duplicates.
            ckpt = repository.checkpoint_at(s, self.job_id, state.step)
            is_new = ckpt is None
            ckpt_id = new_id("ckpt") if is_new else ckpt.id
            key = f"checkpoints/{self.tenant}/{self.job_id}/{ckpt_id}"
            size = self.storage.put_dir(key, path)
            if is_new:
                ckpt = Checkpoint(id=ckpt_id, tenant_id=self.tenant, job_id=self.job_id,
                                  step=state.step, epoch=state.epoch, storage_key=key)
            ckpt.metrics, ckpt.evaluation, ckpt.is_best, ckpt.bytes = metrics, report, is_best, size
            repository.save_checkpoint(s, ckpt, is_new)
            events.record(s, self.job_id, f"checkpoint {ckpt_id} saved at step {state.step}"
                          + (" (best so far)" if is_best else ""),
                          data={"checkpoint": ckpt_id, "step": state.step, "is_best": is_best})

    def on_resume_saved(self, state: TrainState, path: Path) -> None:
        """The attempt made progress: a crash from here on resumes past where it started."""
        if self.resume is not None:
            self.resume.publish(path)  # object storage: uploaded before it counts as saved
        log.info("job %s: resume checkpoint at step %s", self.job_id, state.step)
        if not lifecycle.saved(self.job_id, self.lease.attempt, state.step):
            self.lease.lost.set()


class YieldToPredictions(Callback):
    """Between training steps, waits while the model server on the same CPU cores holds
    prediction or explain requests (app.predict_activity), at most max_pause_s per step: on
    adapt-serve's embedded default predictions come first, and training still goes on under a
    steady stream of them. The pauses are not training time (samples_per_second leaves them out);
    their sum is a job event at the end."""
    GRACE_S = 0.05  # a request ended this recently: the next of a stream is on its way
    POLL_S = 0.01

    def __init__(self, job_id: str, activity: PredictActivity, max_pause_s: float):
        self.job_id, self.activity, self.max_pause_s = job_id, activity, max_pause_s
        self.yielded_s, self.steps = 0.0, 0

    def on_step_end(self, state: TrainState, control: Control) -> None:
        if not self.activity.busy(self.GRACE_S):
            return
        start = time.monotonic()
        deadline = start + self.max_pause_s
        while (self.activity.busy(self.GRACE_S) and time.monotonic() < deadline
               and not shutdown.requested.is_set()):
            time.sleep(self.POLL_S)
        self.yielded_s += time.monotonic() - start
        self.steps += 1

    def on_train_end(self, state: TrainState, control: Control) -> None:
        if not self.steps:
            return
        with session_scope() as s:
            events.record(s, self.job_id, f"paused {self.yielded_s:.1f}s in all before "
                          f"{self.steps} of its steps while predictions were answered on the same "
                          "CPU cores", data={"yielded_s": round(self.yielded_s, 2),
                                             "steps": self.steps})
