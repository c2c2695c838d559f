"""Pre-flight: a few real steps of a job on this device before it is trained for real, to tell
its peak memory, the largest batch size that fits, and how long an epoch and the whole job take.

    recipe = build_recipe(cfg, base, splits, work_dir=...)     # no resume dir, no callbacks
    report = preflight(recipe, budget_bytes=...)

What it runs, in order (the first four are what a job does; their peak is the job's):
1. recipe.setup() — tokenising, the model, for `head` the encoder features (timed: setup_s);
2. one optimizer step on the job's batch size made of the longest training examples (the most
   memory a step takes; it also allocates the optimizer's state);
3. `steps` optimizer steps on the first real batches of epoch 1 (timed per padded token), then
   the longest batch once more (the allocator's heap has grown by then, as a job's does);
4. forward passes on validation batches (timed) and one checkpoint export (timed);
5. one more step on twice the batch size, for the memory-per-example slope. The largest batch
   size that fits is where the line through steps 2 and 5 meets the budget (on CUDA a step that
   runs out of memory halves the batch size until one fits).

Memory: on CUDA torch.cuda.max_memory_allocated; on CPU the process's resident set size (RSS)
sampled every few milliseconds, minus the RSS before setup. A long-lived worker may reuse memory
an earlier job freed, so its figure can read lower than a fresh process's.
"""
import logging
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

from app.ml.tasks import TextTask

log = logging.getLogger(__name__)

__all__ = ["RssPeak", "preflight"]
MAX_BATCH = 1024  # hyperparameters.batch_size's upper bound (app.ml.config.RANGES)


class RssPeak:
    """The peak resident set size of this process while it runs, sampled on a thread."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s, self._proc = interval_s, psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-peak")

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> int:
        rss = self._proc.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def reset(self) -> None:
        """Start a new peak from the current RSS (the base stays)."""
        self.peak = self.sample()

    @property
    def delta(self) -> int:
        return self.peak - self.base


class _Meter:
    """Peak memory on the recipe's device since the last reset, in bytes over the start."""

    def __init__(self, device: str, rss: RssPeak):
        self.cuda, self.rss = device.startswith("cuda"), rss

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.rss.reset()

    def peak(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        self.rss.sample()
        return self.rss.delta


def _budget(device: str, budget_bytes: int | None) -> int:
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        return min(budget_bytes or total, total)
    return budget_bytes or psutil.virtual_memory().available


def _units(inputs: dict, labels: torch.Tensor) -> int:
    """A batch's cost: its padded tokens (texts), else its examples."""
    ids = inputs.get("input_ids")
    return int(ids.numel()) if ids is not None else len(labels)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def preflight(recipe, *, steps: int = 3, budget_bytes: int | None = None) -> dict:
    """Run the pre-flight (see the module) on a recipe that has not been set up."""
    cfg, hp = recipe.cfg, recipe.cfg.hyperparameters
    with RssPeak() as rss:
        meter = _Meter(cfg.device, rss)
        setup_s = _timed(recipe.setup)
        task, loss_fn, bs = recipe.task, recipe.loss_fn(), hp["batch_size"]
        n_train = len(recipe.splits.train_y)
        recipe.model.train()
        probe = getattr(task, "probe_batch", None)
        first = probe(bs) if probe else next(iter(task.train_batches(1)))
        meter.peak()
        recipe.train_step(*first, loss_fn)
        peak_bs = meter.peak()
        train_cost = _train_cost(recipe, steps, loss_fn)
        # the longest batch once more: after steps of other shapes the CPU allocator serves
        # large tensors from its heap rather than fresh mappings, and a job's RSS grows so
        recipe.train_step(*first, loss_fn)
        eval_cost, eval_units = _eval_cost(recipe)
        with tempfile.TemporaryDirectory() as tmp:
            recipe.work_dir = Path(tmp)
            export_s = _timed(recipe.save_checkpoint)
        job_peak = meter.peak()
        fit = _largest_batch(recipe, probe, bs, peak_bs, loss_fn, meter,
                             _budget(cfg.device, budget_bytes), min(n_train, MAX_BATCH))
    epoch_units = task.units(task.batch_list(1)) if hasattr(task, "units") else None
    if epoch_units is not None:
        train_epoch_s = train_cost * epoch_units
        eval_s = eval_cost * task.units(task.eval_batch_list(), validation=True)
    else:  # no cost model for this task: per step and per evaluation batch
        train_epoch_s = train_cost * recipe.steps_per_epoch
        eval_s = eval_cost * eval_units
    epoch_s = train_epoch_s + eval_s + export_s
    return {"device": cfg.device, "batch_size": bs,
            "peak_memory_bytes": int(job_peak),
            "memory_measure": "cuda_max_memory_allocated" if meter.cuda else "cpu_rss_delta",
            **fit, "setup_seconds": round(setup_s, 3),
            "seconds_per_epoch": round(epoch_s, 3),
            "seconds_total": round(setup_s + hp["epochs"] * epoch_s, 3),
            "epochs": hp["epochs"], "steps_per_epoch": recipe.steps_per_epoch,
            "steps_measured": steps, "data": recipe.data_report}


def _train_cost(recipe, steps: int, loss_fn) -> float:
    """Seconds per padded token (or per step, for tasks without a cost model) of real steps;
    the first is a warm-up and not counted when there are more."""
    per_unit = hasattr(recipe.task, "units")
    times = []
    for k, (inputs, labels) in enumerate(recipe.task.train_batches(1)):
        if k >= steps:
            break
        secs = _timed(lambda i=inputs, y=labels: recipe.train_step(i, y, loss_fn))
        times.append(secs / _units(inputs, labels) if per_unit else secs)
    return statistics.median(times[1:] or times) if times else 0.0


@torch.no_grad()
def _eval_cost(recipe) -> tuple[float, int]:
    """(seconds per padded token — per batch without a cost model —, validation batches) of
    forward passes on the first two validation batches and, for texts, the longest one."""
    model, per_unit = recipe.model.eval(), hasattr(recipe.task, "units")
    texts = isinstance(recipe.task, TextTask)  # collating every batch costs little
    times, n, last = [], 0, None
    for n, (_, inputs, labels) in enumerate(recipe.task.eval_batches(), start=1):
        if n <= 2:
            times.append(_forward_cost(recipe, model, inputs, labels, per_unit))
        elif not texts:
            break  # images: decoding them all only to time one more batch is not worth it
        last = (inputs, labels)
    if last is not None and texts:
        times.append(_forward_cost(recipe, model, *last, per_unit))
    model.train()
    return (max(times) if times else 0.0), len(recipe.task.eval_batch_list()) if per_unit else n


def _forward_cost(recipe, model, inputs: dict, labels: torch.Tensor, per_unit: bool) -> float:
    moved = {k: v.to(recipe.device) for k, v in inputs.items()}
    secs = _timed(lambda: model(**moved))
    return secs / _units(inputs, labels) if per_unit else secs


def _largest_batch(recipe, probe, bs: int, peak_bs: int, loss_fn, meter: _Meter, budget: int,
                   cap: int) -> dict:
    """The largest batch size whose step fits the budget: a line through the peaks at bs and
    2·bs (the longest examples) meets the budget; capped at the training set and MAX_BATCH."""
    out = {"memory_budget_bytes": int(budget), "max_batch_size": None, "fits": peak_bs <= budget}
    if probe is None or bs >= cap:
        out["max_batch_size"] = min(bs, cap) if out["fits"] else None
        return out
    meter.reset()
    try:
        recipe.train_step(*probe(2 * bs), loss_fn)
        peak_2bs = meter.peak()
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        out["max_batch_size"] = bs  # bs fits and 2·bs does not
        return out
    slope = (peak_2bs - peak_bs) / bs
    out["bytes_per_example"] = int(max(slope, 0))
    if slope <= 0:  # below what RSS can resolve: memory does not limit the batch size here
        out["max_batch_size"] = cap
    else:
        largest = math.floor(bs + (budget - peak_bs) / slope)
        out["max_batch_size"] = max(min(largest, cap), 1) if largest >= 1 else None
    return out
