"""Callbacks observe the training state and only request actions through Control; the loop acts."""
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    epoch: int = 0            # 1-based epoch in progress (or just finished)
    epochs: int = 0
    step: int = 0             # optimizer steps done
    total_steps: int = 0
    steps_per_epoch: int = 0
    samples_seen: int = 0
    # the current epoch's summed loss (a tensor on the training device while it trains: read
    # through train_loss, at a callback's progress interval, never a host sync per step)
    loss_sum: Any = 0.0
    loss_n: int = 0
    elapsed_s: float = 0.0    # seconds of training, excluding evaluation (with a `head` job's
                              # encoder pass over the training examples); saved on resume
    best_metric: float | None = None
    # "bf16" | "fp32": the precision the run trains in, chosen at its start (app.ml.precision.
    # faster_of) and kept by a resumed run (None: a checkpoint from before the choice was recorded)
    precision: str | None = None
    best_step: int | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def train_loss(self) -> float:
        """The mean loss over the current epoch so far."""
        return float(self.loss_sum) / self.loss_n if self.loss_n else 0.0


@dataclass
class Control:
    should_stop: bool = False
    stop_reason: str | None = None  # "cancelled", "early_stopping", "shutdown", …
    should_save: bool = False       # write a resume checkpoint after this step

    def stop(self, reason: str) -> None:
        self.should_stop, self.stop_reason = True, reason


class Callback:
    def on_train_begin(self, state: TrainState, control: Control) -> None: ...
    def on_step_end(self, state: TrainState, control: Control) -> None: ...
    def on_evaluate(self, state: TrainState, metrics: dict, report: dict, control: Control) -> None: ...
    def on_checkpoint(self, state: TrainState, path: Path, metrics: dict, report: dict,
                      is_best: bool) -> None: ...
    def on_train_end(self, state: TrainState, control: Control) -> None: ...
    def on_resume_saved(self, state: TrainState, path: Path) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: list[Callback]):
        self.callbacks = callbacks

    def _each(self, name: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, name)(*args)

    def on_train_begin(self, *args) -> None: self._each("on_train_begin", *args)
    def on_step_end(self, *args) -> None: self._each("on_step_end", *args)
    def on_evaluate(self, *args) -> None: self._each("on_evaluate", *args)
    def on_checkpoint(self, *args) -> None: self._each("on_checkpoint", *args)
    def on_train_end(self, *args) -> None: self._each("on_train_end", *args)
    def on_resume_saved(self, *args) -> None: self._each("on_resume_saved", *args)


class EarlyStopping(Callback):
    """Requests a stop after `patience` evaluations without improving `metric`."""

    def __init__(self, metric: str, patience: int, higher_is_better: bool):
        self.metric, self.patience, self.higher = metric, patience, higher_is_better
        self.best: float | None = None
        self.bad = 0

    def on_train_begin(self, state: TrainState, control: Control) -> None:
        # A resumed run replays the evaluations it already made, so it stops where the
        # uninterrupted run would have.
        self.best, self.bad = None, 0
        for past in state.history:
            self.on_evaluate(state, past, {}, Control())

    def on_evaluate(self, state: TrainState, metrics: dict, report: dict, control: Control) -> None:
        value = metrics[self.metric]
        improved = self.best is None or (value > self.best if self.higher else value < self.best)
        if improved:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            control.stop("early_stopping")


class PeriodicSave(Callback):
    """Requests a resume checkpoint every `every_steps` steps and/or `every_s` seconds."""

    def __init__(self, every_steps: int = 0, every_s: float = 0.0):
        self.every_steps, self.every_s = every_steps, every_s
        self._last = 0.0

    def on_train_begin(self, state: TrainState, control: Control) -> None:
        self._last = time.monotonic()

    def on_step_end(self, state: TrainState, control: Control) -> None:
        now = time.monotonic()
        if (self.every_steps and state.step % self.every_steps == 0) or (
                self.every_s and now - self._last >= self.every_s):
            control.should_save = True
            self._last = now
