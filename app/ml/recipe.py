"""The training recipe: one loop (optimizer, schedule, evaluation, checkpoints, resume, callbacks)
around a task component (app.ml.tasks) that supplies the data, the model, its batches and export.

    recipe = build_recipe(cfg, BaseModelSpec(task, path, ...), splits, work_dir=...)
    recipe.setup(resume_from=checkpointing.latest(resume_dir))   # None: a fresh run
    result = recipe.train()
"""
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from app.ml import checkpointing
from app.ml.calibration import calibrate
from app.ml.callbacks import Callback, CallbackList, Control, EarlyStopping, TrainState
from app.ml.config import METRICS_HIGHER_IS_BETTER, TrainConfig
from app.ml.data import IGNORE_LABEL, Splits
from app.ml.distill import DistillTask, shallow_student
from app.ml.distributed import Group
from app.ml.feature_cache import FeatureCache
from app.ml.metrics import classification_report
from app.ml.precision import (DTYPE_NAMES, DTYPES, autocast, configure_device, faster_of,
                              measured_choice, train_autocast_dtype)
from app.ml.prune import pruned_copy, pruned_image_copy
from app.ml.tasks import ImageTask, Task, TextTask

log = logging.getLogger(__name__)

__all__ = ["BaseModelSpec", "Recipe", "SourceSpec", "TrainResult", "build_recipe",
           "seed_everything"]

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


@dataclass(frozen=True)
class SourceSpec:
    """The fine-tuned model a job derives from: a distill job's teacher, a prune job's source."""

    kind: str                     # "distill" | "prune"
    checkpoint: Path              # its exported checkpoint directory
    logits_path: Path | None = None  # distill: the cached teacher logits (in the resume dir)
    model_id: str = ""            # its id, for the record
    transfer_texts: tuple[str, ...] = ()  # distill: more texts, labelled by the teacher alone


def build_recipe(cfg: TrainConfig, base: BaseModelSpec, splits: Splits, *, work_dir: Path,
                 callbacks: Sequence[Callback] = (), resume_dir: Path | None = None,
                 keep_last: int = 2, feature_cache: FeatureCache | None = None,
                 images_zip: Path | None = None, precompute_features: bool = True,
                 group: Group | None = None, source: SourceSpec | None = None) -> "Recipe":
    """The recipe for the base model's task. cfg.labels, when set, must be splits.labels (when
    empty, it is filled from them); feature_cache and precompute_features apply to text only,
    images_zip (the dataset archive the image members are read from) to images only; source
    (methods distill and prune) names the teacher or the model to prune. With group, this
    process is one of the group training the job (app.ml.distributed)."""
    if not cfg.labels:
        cfg = replace(cfg, labels=list(splits.labels))
    elif list(cfg.labels) != list(splits.labels):
        raise ValueError(f"cfg.labels {cfg.labels} differ from the splits' {splits.labels}")
    task: Task
    if base.task == "image-classification":
        if not base.architecture or images_zip is None:
            raise ValueError("an image recipe needs base.architecture and images_zip")
        build = None
        if cfg.method == "prune" and source is not None:
            def build(c):
                return pruned_image_copy(source.checkpoint, c.hp("prune_channels"))
        task = ImageTask(base.architecture, base.path, images_zip, build=build)
    elif base.task == "text-classification":
        if base.path is None:
            raise ValueError("a text recipe needs base.path (the model directory)")
        task = _text_task(cfg, base, source, feature_cache, precompute_features)
    else:
        raise ValueError(f"unknown task {base.task!r} (one of {', '.join(TASKS)})")
    if cfg.method in ("distill", "prune") and (source is None or source.kind != cfg.method):
        raise ValueError(f"method {cfg.method} needs a SourceSpec of its kind")
    if cfg.method == "distill":
        task = DistillTask(task, source.checkpoint, source.logits_path, images_zip,
                           transfer_texts=source.transfer_texts)
    return Recipe(cfg, task, splits, work_dir=work_dir, callbacks=callbacks,
                  resume_dir=resume_dir, keep_last=keep_last, group=group)


def _text_task(cfg: TrainConfig, base: BaseModelSpec, source: SourceSpec | None,
               feature_cache: FeatureCache | None, precompute_features: bool) -> TextTask:
    """The base model's text task; a shallow copy of the teacher (distill with student_layers)
    or the pruned source model (prune) as the initial model instead, with its tokenizer."""
    hp, build = cfg.hyperparameters, None
    if cfg.method == "prune" and source is not None:
        def build(c):
            return pruned_copy(source.checkpoint, c.hp("prune_ffn"), c.hp("dropout"),
                               c.hp("prune_heads"))
    elif cfg.method == "distill" and source is not None and hp.get("student_layers"):
        def build(c):
            return shallow_student(source.checkpoint, c.hp("student_layers"), c.hp("dropout"))
    if build is not None:
        return TextTask(source.checkpoint, build=build)
    return TextTask(base.path, feature_cache=feature_cache, feature_namespace=base.namespace,
                    precompute_features=precompute_features)


class Recipe:
    """setup → train (one explicit loop) → evaluate → save_checkpoint, for any task component.

    With a group (several processes, DistributedDataParallel): each process trains on its share
    of every batch; rank 0 alone runs the callbacks, writes checkpoints and decides when to save
    or stop, and the others follow it step by step."""

    def __init__(self, config: TrainConfig, task: Task, splits: Splits, *, work_dir: Path,
                 callbacks: Sequence[Callback] = (), resume_dir: Path | None = None,
                 keep_last: int = 2, group: Group | None = None):
        self.cfg, self.task, self.splits, self.work_dir = config, task, splits, Path(work_dir)
        self.feature_stats: dict | None = None
        self.calibration: dict | None = None  # of the latest evaluation (app.ml.calibration)
        self.data_report: dict | None = None  # texts: overflowing max_length, chunking
        self.resumed_step: int | None = None
        self.resume_dir, self.keep_last = resume_dir, keep_last
        self.group = group
        self.follower = group is not None and not group.leader
        self.callbacks = [] if self.follower else list(callbacks or [])
        es = config.early_stopping
        if es and not self.follower:
            self.callbacks.append(EarlyStopping(es["metric"], es["patience"],
                                                METRICS_HIGHER_IS_BETTER[es["metric"]]))
        self.cb = CallbackList(self.callbacks)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, resume_from: Path | None = None) -> None:
        """Prepare the data once and build the model, optimizer and schedule; with resume_from
        (a resume checkpoint written by an earlier attempt of the same run), continue from it."""
        seed_everything(self.cfg.seed)
        hp, group = self.cfg.hyperparameters, self.group
        device = group.device if group else torch.device(self.cfg.device)
        configure_device(str(device))
        if group:
            self.task.shard = (group.rank, group.world)
        if self.follower:  # rank 0 prepares first: the others find its features in the cache
            group.barrier()
        self.model = self.task.prepare(self.cfg, self.splits.train,
                                       self.splits.validation).to(device)
        if group and group.leader:
            group.barrier()
        self.feature_stats = self.task.feature_stats
        self.data_report = getattr(self.task, "data_report", None)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and "norm" not in name.lower() else no_decay).append(p)
        # On a GPU the fused AdamW: one kernel for every parameter's update, not several each
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}], lr=hp["learning_rate"],
            fused=True if device.type == "cuda" else None)
        # (the task's batches: a distill job's augmented copies add to the training examples)
        self.steps_per_epoch = len(self.task.batch_list(1))
        total = self.steps_per_epoch * hp["epochs"]
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(total * hp["warmup_ratio"]), total)
        self.state = TrainState(epochs=hp["epochs"], total_steps=total,
                                steps_per_epoch=self.steps_per_epoch)
        self.device = device
        self._trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._position: tuple = (1, 0, (0.0, 0))  # (epoch, next batch, running loss of epoch)
        self._best: tuple = (None, None, None)
        self.resumed_step, self.precision_trial = None, None
        if resume_from is not None:
            self._resume(Path(resume_from))  # its state already counts the first attempt's time
        else:
            if group:
                group.reseed(self.cfg.seed)
            if self.feature_stats:
                # A `head` job's encoder pass over the training examples, done once up front, is
                # training time: without it samples/s would only count the tiny head's steps.
                self.state.elapsed_s += self.feature_stats.get("train_seconds", 0.0)
        self.autocast_dtype = self._choose_precision()
        # DDP wraps the model for the training forward only; evaluation, checkpoints and
        # export use the model itself (its parameter names, no collectives)
        self._forward = group.wrap(self.model) if group else self.model

    # -- precision ---------------------------------------------------------------------------
    def _choose_precision(self) -> torch.dtype | None:
        """The autocast dtype to train in (None: float32). A resumed run keeps the one its first
        attempt chose; "auto" on a GPU with native bf16 times the first training batch in
        both and keeps bf16 only if it was faster (app.ml.precision.faster_of; a group of
        processes, which would have to agree, keeps bf16 there unmeasured)."""
        if self.state.precision is not None:
            return DTYPES.get(self.state.precision)
        dtype = train_autocast_dtype(self.cfg.device, self.cfg.precision)
        if (dtype is not None and self.cfg.precision == "auto" and self.group is None
                and measured_choice(self.cfg.device)):
            t0 = time.perf_counter()
            dtype, times = self._time_precisions(dtype)
            self.precision_trial = {"chosen": DTYPE_NAMES.get(dtype, "fp32"),
                                    "ms_per_step": times,
                                    "seconds": round(time.perf_counter() - t0, 3)}
            self.state.elapsed_s += time.perf_counter() - t0  # the job pays for it: it counts
        self.state.precision = DTYPE_NAMES.get(dtype, "fp32")
        return dtype

    def _time_precisions(self, candidate: torch.dtype) -> tuple[torch.dtype | None, dict]:
        """faster_of on forward and backward passes of the first training batch, leaving no trace:
        weights (no optimizer step), gradients, batch-norm statistics and every RNG are as before,
        so the run is the one it would have been in the chosen precision without the trial.
        Images: a batch decoded here (probe_batch), not DataLoader workers started for one."""
        if isinstance(self.task, ImageTask):
            inputs, labels = self.task.probe_batch(self.cfg.hp("batch_size"))
        else:
            batches = self.task.train_batches(1)
            inputs, labels = next(iter(batches))
            getattr(batches, "close", lambda: None)()
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        labels = labels.to(self.device)
        loss_fn, cuda = self.loss_fn(), self.device.type == "cuda"
        rngs = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
                torch.cuda.get_rng_state_all() if cuda else None)
        buffers = {k: b.clone() for k, b in self.model.named_buffers()}

        def step(dtype):
            with autocast(self.cfg.device, dtype):
                logits = self.model(**inputs)
            loss_fn(logits.float(), labels).backward()

        self.model.train()
        try:
            return faster_of(step, candidate,
                             torch.cuda.synchronize if cuda else (lambda: None))
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for k, b in self.model.named_buffers():
                    b.copy_(buffers[k])
            torch.set_rng_state(rngs[0])
            random.setstate(rngs[1])
            np.random.set_state(rngs[2])
            if cuda:
                torch.cuda.set_rng_state_all(rngs[3])

    # -- train -------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run every epoch (or until a callback requests a stop); evaluate and checkpoint each.
        After setup(resume_from=…), it continues from the saved step as if never interrupted."""
        hp, state, control = self.cfg.hyperparameters, self.state, Control()
        loss_fn = self.loss_fn()
        first_epoch, first_batch, (loss_sum, loss_n) = self._position
        self.cb.on_train_begin(state, control)
        for epoch in range(first_epoch, hp["epochs"] + 1):
            state.epoch = epoch
            self._forward.train()
            batch_idx = first_batch if epoch == first_epoch else 0
            if epoch != first_epoch:
                loss_sum, loss_n = 0.0, 0
            state.loss_sum, state.loss_n = loss_sum, loss_n
            t0 = time.perf_counter()
            for inputs, labels in self.task.train_batches(epoch, start=batch_idx):
                batch_loss, batch_n = self.train_step(inputs, labels, loss_fn)
                loss_sum, loss_n = loss_sum + batch_loss, loss_n + batch_n
                batch_idx += 1
                state.step += 1
                state.samples_seen += batch_n
                state.loss_sum, state.loss_n = loss_sum, loss_n
                now = time.perf_counter()
                state.elapsed_s += now - t0
                self.cb.on_step_end(state, control)
                if self.group:
                    self.group.follow(control)
                if control.should_save:
                    self._save_resume((epoch, batch_idx, (float(loss_sum), loss_n)), control)
                if control.should_stop:
                    break
                t0 = time.perf_counter()
            if control.should_stop and control.stop_reason != "early_stopping":
                break  # cancelled or shutting down mid-epoch: no evaluation of a partial epoch
            self._end_epoch(state, control)
            if self.group:
                self.group.follow(control)  # early stopping, decided by rank 0
            if control.should_stop:
                break
            self._save_resume((epoch + 1, 0, (0.0, 0)), control)
        self.cb.on_train_end(state, control)
        return TrainResult(state, control.stop_reason, *self._best)

    def train_step(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                   loss_fn) -> tuple[torch.Tensor | float, int]:
        """One optimizer step on a batch; its (summed loss, examples): the loss a float64 tensor
        on the device (nothing waits for the GPU here), a float in a group."""
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        with autocast(self.cfg.device, self.autocast_dtype):
            logits = self._forward(**inputs)
        batch_loss, batch_n = self._backward(logits, labels.to(self.device), loss_fn)
        torch.nn.utils.clip_grad_norm_(self._trainable, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return batch_loss, batch_n

    def loss_fn(self):
        """The task's own loss (distillation: its "labels" carry the teacher's logits), else
        cross-entropy."""
        return getattr(self.task, "loss", None) or torch.nn.CrossEntropyLoss()

    def _backward(self, logits: torch.Tensor, labels: torch.Tensor,
                  loss_fn) -> tuple[torch.Tensor | float, int]:
        """Backward of the batch's loss; returns its (summed loss, examples). In a group: of this
        process's share, summed (padding ignored), the gradients rescaled to the mean over the
        whole batch (Group.step), and the whole batch's figures returned."""
        if self.group is None:
            loss = loss_fn(logits.float(), labels)
            loss.backward()
            return loss.detach().double() * len(labels), len(labels)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum",
                                                 ignore_index=IGNORE_LABEL)
        loss.backward()
        return self.group.step(loss, int((labels != IGNORE_LABEL).sum()), self._trainable)

    def _end_epoch(self, state: TrainState, control: Control) -> None:
        metrics, report = self.evaluate()
        metrics["train_loss"] = state.train_loss
        if self.follower:  # rank 0 records the evaluation and exports the checkpoint
            return
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
        rank_rngs = self.group.rng_states() if self.group else None
        if self.follower:
            return
        epoch, batch, (loss_sum, loss_n) = position
        path = checkpointing.save(
            self.resume_dir, model=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, state=self.state, keep_last=self.keep_last,
            position={"epoch": epoch, "batch": batch, "loss_sum": loss_sum, "loss_n": loss_n},
            rank_rngs=rank_rngs)
        self.cb.on_resume_saved(self.state, path)

    def _resume(self, path: Path) -> None:
        """Continue from a resume checkpoint written by an earlier attempt of the same run."""
        self.state, pos = checkpointing.load(path, model=self.model, optimizer=self.optimizer,
                                             scheduler=self.scheduler)
        self._position = (pos["epoch"], pos["batch"], (pos["loss_sum"], pos["loss_n"]))
        self.resumed_step = self.state.step
        if self.group:
            if len(pos["rank_rngs"]) != self.group.world:
                raise ValueError(f"{path} was written by {len(pos['rank_rngs']) or 1} "
                                 f"process(es), not {self.group.world}")
            self.group.restore_rng(pos["rank_rngs"])

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
        loss_sum, found = 0.0, {}
        for idx, inputs, labels in self.task.eval_batches():  # in a group: this process's share
            with autocast(self.cfg.device, self.autocast_dtype):
                logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
            loss_sum += torch.nn.functional.cross_entropy(
                logits.float(), labels.to(self.device), reduction="sum").item()
            found.update(zip(idx, logits.float().cpu(), strict=True))
        if self.group:  # every share, gathered: the metrics cover the whole validation set
            shares = self.group.gather((loss_sum, found))
            loss_sum = sum(share_loss for share_loss, _ in shares)
            found = {i: row for _, share in shares for i, row in share.items()}
        logits = (torch.stack([found[i] for i in range(len(val_y))]) if val_y
                  else torch.empty(0, len(self.cfg.labels)))
        report = classification_report(val_y, logits.argmax(-1).tolist(), self.cfg.labels)
        n = max(len(val_y), 1)
        metrics = {"val_loss": loss_sum / n, "val_accuracy": report["accuracy"],
                   "val_macro_f1": report["macro_f1"]}
        self.calibration = None
        if self.cfg.hyperparameters.get("calibrate", 1) and val_y:
            # fitted on this evaluation's logits: the checkpoint carries its own temperature
            self.calibration = calibrate(logits, torch.tensor(val_y), list(self.cfg.labels),
                                         self.cfg.hyperparameters.get("target_precision"))
            report["calibration"] = self.calibration
        if self.data_report:
            report["data"] = self.data_report
        return metrics, report

    # -- checkpoint --------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Export the current weights as a loadable directory under work_dir."""
        path = self.work_dir / f"step-{self.state.step:08d}"
        extra = {"method": self.cfg.method, "step": self.state.step, "epoch": self.state.epoch}
        if cal := self.calibration:
            extra["calibration"] = {"temperature": cal["temperature"],
                                    "thresholds": cal.get("thresholds")}
        self.task.export(self.model, path, extra)
        return path

    def cleanup(self) -> None:
        """Drop the model, optimizer and the task's data so a long-lived worker gives their
        memory back."""
        for attr in ("model", "_forward", "optimizer", "scheduler", "task", "splits"):
            self.__dict__.pop(attr, None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
