"""The training recipe: one loop (optimizer, schedule, evaluation, checkpoints, resume, callbacks)
around a task component (app.ml.tasks) that supplies the data, the model, its batches and export.

    recipe = build_recipe(cfg, BaseModelSpec(task, path, ...), splits, work_dir=...)
    recipe.setup(resume_from=checkpointing.latest(resume_dir))   # None: a fresh run
    result = recipe.train()
"""
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from app.ml import checkpointing
from app.ml.callbacks import Callback, CallbackList, Control, EarlyStopping, TrainState
from app.ml.config import METRICS_HIGHER_IS_BETTER, TrainConfig
from app.ml.data import Splits
from app.ml.feature_cache import FeatureCache
from app.ml.metrics import classification_report
from app.ml.precision import autocast, train_autocast_dtype
from app.ml.tasks import ImageTask, Task, TextTask

log = logging.getLogger(__name__)

__all__ = ["BaseModelSpec", "Recipe", "TrainResult", "build_recipe", "seed_everything"]

TASKS = ("text-classification", "image-classification")


@dataclass
class TrainResult:
    state: TrainState
    stop_reason: str | None       # None: ran every epoch
    best_checkpoint: Path | None
    best_metrics: dict | None
    best_report: dict | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class BaseModelSpec:
    """What the worker knows of the base model (from the catalog)."""

    task: str                     # "text-classification" | "image-classification"
    path: Path | None             # text: the model directory; image: the weights file (or None)
    architecture: str | None = None  # torchvision architecture, for images
    namespace: str = ""           # feature-cache namespace, e.g. f"{tenant}/{entry.id}@{revision}"


def build_recipe(cfg: TrainConfig, base: BaseModelSpec, splits: Splits, *, work_dir: Path,
                 callbacks: Sequence[Callback] = (), resume_dir: Path | None = None,
                 keep_last: int = 2, feature_cache: FeatureCache | None = None,
                 images_zip: Path | None = None, precompute_features: bool = True) -> "Recipe":
    """The recipe for the base model's task. cfg.labels, when set, must be splits.labels (when
    empty, it is filled from them); feature_cache and precompute_features apply to text only,
    images_zip (the dataset archive the image members are read from) to images only."""
    if not cfg.labels:
        cfg = replace(cfg, labels=list(splits.labels))
    elif list(cfg.labels) != list(splits.labels):
        raise ValueError(f"cfg.labels {cfg.labels} differ from the splits' {splits.labels}")
    task: Task
    if base.task == "image-classification":
        if not base.architecture or images_zip is None:
            raise ValueError("an image recipe needs base.architecture and images_zip")
        task = ImageTask(base.architecture, base.path, images_zip)
    elif base.task == "text-classification":
        if base.path is None:
            raise ValueError("a text recipe needs base.path (the model directory)")
        task = TextTask(base.path, feature_cache=feature_cache, feature_namespace=base.namespace,
                        precompute_features=precompute_features)
    else:
        raise ValueError(f"unknown task {base.task!r} (one of {', '.join(TASKS)})")
    return Recipe(cfg, task, splits, work_dir=work_dir, callbacks=callbacks,
                  resume_dir=resume_dir, keep_last=keep_last)


class Recipe:
    """setup → train (one explicit loop) → evaluate → save_checkpoint, for any task component."""

    def __init__(self, config: TrainConfig, task: Task, splits: Splits, *, work_dir: Path,
                 callbacks: Sequence[Callback] = (), resume_dir: Path | None = None,
                 keep_last: int = 2):
        self.cfg, self.task, self.splits, self.work_dir = config, task, splits, Path(work_dir)
        self.feature_stats: dict | None = None
        self.resumed_step: int | None = None
        self.resume_dir, self.keep_last = resume_dir, keep_last
        self.callbacks = list(callbacks or [])
        es = config.early_stopping
        if es:
            self.callbacks.append(EarlyStopping(es["metric"], es["patience"],
                                                METRICS_HIGHER_IS_BETTER[es["metric"]]))
        self.cb = CallbackList(self.callbacks)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, resume_from: Path | None = None) -> None:
        """Prepare the data once and build the model, optimizer and schedule; with resume_from
        (a resume checkpoint written by an earlier attempt of the same run), continue from it."""
        seed_everything(self.cfg.seed)
        hp, device = self.cfg.hyperparameters, torch.device(self.cfg.device)
        self.model = self.task.prepare(self.cfg, self.splits.train,
                                       self.splits.validation).to(device)
        self.feature_stats = self.task.feature_stats
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and "norm" not in name.lower() else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}], lr=hp["learning_rate"])
        self.steps_per_epoch = math.ceil(len(self.splits.train_y) / hp["batch_size"])
        total = self.steps_per_epoch * hp["epochs"]
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(total * hp["warmup_ratio"]), total)
        self.state = TrainState(epochs=hp["epochs"], total_steps=total,
                                steps_per_epoch=self.steps_per_epoch)
        self.device = device
        self.autocast_dtype = train_autocast_dtype(self.cfg.device, self.cfg.precision)
        self._trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._position: tuple = (1, 0, (0.0, 0))  # (epoch, next batch, running loss of epoch)
        self._best: tuple = (None, None, None)
        self.resumed_step = None
        if resume_from is not None:
            self._resume(Path(resume_from))  # its state already counts the first attempt's time
        elif self.feature_stats:
            # A `head` job's encoder pass over the training examples, done once up front, is
            # training time: without it samples/s would only count the tiny head's steps.
            self.state.elapsed_s += self.feature_stats.get("train_seconds", 0.0)

    # -- train -------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run every epoch (or until a callback requests a stop); evaluate and checkpoint each.
        After setup(resume_from=…), it continues from the saved step as if never interrupted."""
        hp, state, control = self.cfg.hyperparameters, self.state, Control()
        loss_fn = torch.nn.CrossEntropyLoss()
        first_epoch, first_batch, (loss_sum, loss_n) = self._position
        self.cb.on_train_begin(state, control)
        for epoch in range(first_epoch, hp["epochs"] + 1):
            state.epoch = epoch
            self.model.train()
            batch_idx = first_batch if epoch == first_epoch else 0
            if epoch != first_epoch:
                loss_sum, loss_n = 0.0, 0
            t0 = time.perf_counter()
            for inputs, labels in self.task.train_batches(epoch, start=batch_idx):
                inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
                with autocast(self.cfg.device, self.autocast_dtype):
                    logits = self.model(**inputs)
                loss = loss_fn(logits.float(), labels.to(self.device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self._trainable, 1.0)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                loss_sum, loss_n = loss_sum + loss.item() * len(labels), loss_n + len(labels)
                batch_idx += 1
                state.step += 1
                state.samples_seen += len(labels)
                state.train_loss = loss_sum / loss_n
                now = time.perf_counter()
                state.elapsed_s += now - t0
                self.cb.on_step_end(state, control)
                if control.should_save:
                    self._save_resume((epoch, batch_idx, (loss_sum, loss_n)), control)
                if control.should_stop:
                    break
                t0 = time.perf_counter()
            if control.should_stop and control.stop_reason != "early_stopping":
                break  # cancelled or shutting down mid-epoch: no evaluation of a partial epoch
            self._end_epoch(state, control)
            if control.should_stop:
                break
            self._save_resume((epoch + 1, 0, (0.0, 0)), control)
        self.cb.on_train_end(state, control)
        return TrainResult(state, control.stop_reason, *self._best)

    def _end_epoch(self, state: TrainState, control: Control) -> None:
        metrics, report = self.evaluate()
        metrics["train_loss"] = state.train_loss
        is_best = self._is_better(metrics)
        self.cb.on_evaluate(state, metrics, report, control)
        path = self.save_checkpoint()
        if is_best:
            self._best = (path, metrics, report)
        self.cb.on_checkpoint(state, path, metrics, report, is_best)
        state.history.append({"epoch": state.epoch, "step": state.step, **metrics})

    # -- resume ------------------------------------------------------------------------------
    def _save_resume(self, position: tuple, control: Control) -> None:
        control.should_save = False
        if self.resume_dir is None:
            return
        epoch, batch, (loss_sum, loss_n) = position
        path = checkpointing.save(
            self.resume_dir, model=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, state=self.state, keep_last=self.keep_last,
            position={"epoch": epoch, "batch": batch, "loss_sum": loss_sum, "loss_n": loss_n})
        self.cb.on_resume_saved(self.state, path)

    def _resume(self, path: Path) -> None:
        """Continue from a resume checkpoint written by an earlier attempt of the same run."""
        self.state, pos = checkpointing.load(path, model=self.model, optimizer=self.optimizer,
                                             scheduler=self.scheduler)
        self._position = (pos["epoch"], pos["batch"], (pos["loss_sum"], pos["loss_n"]))
        self.resumed_step = self.state.step

    def _is_better(self, metrics: dict) -> bool:
        name = self.cfg.select_checkpoint_by
        value, higher = metrics[name], METRICS_HIGHER_IS_BETTER[name]
        if self.state.best_metric is None or (
                value > self.state.best_metric if higher else value < self.state.best_metric):
            self.state.best_metric, self.state.best_step = value, self.state.step
            return True
        return False

    # -- evaluate ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[dict, dict]:
        """Validation loss, accuracy, macro-F1 (metrics) and the full report."""
        self.model.eval()
        val_y = self.splits.val_y
        loss_sum, preds = 0.0, [0] * len(val_y)
        for idx, inputs, labels in self.task.eval_batches():
            with autocast(self.cfg.device, self.autocast_dtype):
                logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
            loss_sum += torch.nn.functional.cross_entropy(
                logits.float(), labels.to(self.device), reduction="sum").item()
            for i, p in zip(idx, logits.argmax(-1).tolist(), strict=True):
                preds[i] = p
        report = classification_report(val_y, preds, self.cfg.labels)
        n = max(len(val_y), 1)
        metrics = {"val_loss": loss_sum / n, "val_accuracy": report["accuracy"],
                   "val_macro_f1": report["macro_f1"]}
        return metrics, report

    # -- checkpoint --------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Export the current weights as a loadable directory under work_dir."""
        path = self.work_dir / f"step-{self.state.step:08d}"
        self.task.export(self.model, path, {"method": self.cfg.method, "step": self.state.step,
                                            "epoch": self.state.epoch})
        return path

    def cleanup(self) -> None:
        """Drop the model, optimizer and the task's data so a long-lived worker gives their
        memory back."""
        for attr in ("model", "optimizer", "scheduler", "task", "splits"):
            self.__dict__.pop(attr, None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
