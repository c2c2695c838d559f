"""The text-classification recipe: setup → train (one explicit loop) → evaluate → save_checkpoint."""
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from app.ml import checkpointing
from app.ml import data as D
from app.ml.callbacks import Callback, CallbackList, Control, EarlyStopping, TrainState
from app.ml.config import METRICS_HIGHER_IS_BETTER, TrainConfig
from app.ml.feature_cache import FeatureCache, example_key
from app.ml.metrics import classification_report
from app.ml.precision import autocast, train_autocast_dtype
from app.ml.modeling import build_classifier, export, load_tokenizer

log = logging.getLogger(__name__)


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


class TextClassificationRecipe:
    def __init__(self, config: TrainConfig, base_dir: Path, work_dir: Path,
                 callbacks: list[Callback] | None = None, resume_dir: Path | None = None,
                 keep_last: int = 2, feature_cache: FeatureCache | None = None,
                 feature_namespace: str = "", precompute_features: bool = True):
        self.cfg, self.base_dir, self.work_dir = config, Path(base_dir), Path(work_dir)
        self.feature_cache = feature_cache
        self.feature_namespace = feature_namespace or str(self.base_dir)
        self.feature_stats: dict | None = None
        self.precompute_features = precompute_features  # False: the encoder runs every epoch
        self.resume_dir, self.keep_last = resume_dir, keep_last
        self.callbacks = list(callbacks or [])
        es = config.early_stopping
        if es:
            self.callbacks.append(EarlyStopping(es["metric"], es["patience"],
                                                METRICS_HIGHER_IS_BETTER[es["metric"]]))
        self.cb = CallbackList(self.callbacks)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, train_x: list, train_labels: list[int], val_x: list,
              val_labels: list[int]) -> None:
        """Prepare the data once and build the model, optimizer and schedule."""
        seed_everything(self.cfg.seed)
        hp, device = self.cfg.hyperparameters, torch.device(self.cfg.device)
        self.model = self._prepare(train_x, train_labels, val_x, val_labels).to(device)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and "norm" not in name.lower() else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}], lr=hp["learning_rate"])
        self.steps_per_epoch = math.ceil(len(self.train_data) / hp["batch_size"])
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

    # -- what differs between tasks: data, model, batches, export -----------------------------
    def _prepare(self, train_x, train_labels, val_x, val_labels) -> torch.nn.Module:
        """Tokenise every text once; the classifier with the method's weights set to train."""
        hp = self.cfg.hyperparameters
        self.tokenizer = load_tokenizer(self.base_dir)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.train_data = D.encode(self.tokenizer, train_x, train_labels, hp["max_length"])
        self.val_data = D.encode(self.tokenizer, val_x, val_labels, hp["max_length"])
        model = build_classifier(self.base_dir, self.cfg.labels, self.cfg.method, hp)
        if self.cfg.method == "head" and self.precompute_features:
            # The encoder is fixed: run it once per example, not once per example per epoch.
            model.to(self.cfg.device)
            self.train_data, self.val_data = self._featurize(model, self.train_data,
                                                             self.val_data)
        return model

    @torch.no_grad()
    def _featurize(self, model, *datasets: D.EncodedTexts) -> list[D.FeatureData]:
        """Each example's pooled features, from the shared cache where it has them."""
        t0 = time.perf_counter()
        keys = [[example_key(ids) for ids in ds.input_ids] for ds in datasets]
        cached = self.feature_cache.load(self.feature_namespace) if self.feature_cache else {}
        todo = sorted({k: (d, i) for d, ks in enumerate(keys) for i, k in enumerate(ks)
                       if k not in cached}.items(),  # similar lengths together: little padding
                      key=lambda item: len(datasets[item[1][0]].input_ids[item[1][1]]))
        model.eval()
        computed: dict[str, torch.Tensor] = {}
        bs = self.cfg.hp("eval_batch_size")
        for b in range(0, len(todo), bs):
            chunk = todo[b: b + bs]
            inputs = D.collate([datasets[d].input_ids[i] for _, (d, i) in chunk], self.pad_id)
            with autocast(self.cfg.device, train_autocast_dtype(self.cfg.device, self.cfg.precision)):
                feats = model.features(**{k: v.to(self.cfg.device) for k, v in inputs.items()})
            computed.update((k, f.float().cpu()) for (k, _), f in zip(chunk, feats, strict=True))
        if self.feature_cache and computed:
            self.feature_cache.store(self.feature_namespace, {**cached, **computed})
        table = {**cached, **computed}
        self.feature_stats = {"examples": sum(map(len, keys)), "computed": len(computed),
                              "seconds": round(time.perf_counter() - t0, 2)}
        return [D.FeatureData(torch.stack([table[k] for k in ks]) if ks else torch.empty(0),
                              ds.labels) for ks, ds in zip(keys, datasets, strict=True)]

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This epoch's training batches (example indices); length-bucketed for token ids."""
        hp, data = self.cfg.hyperparameters, self.train_data
        lengths = ([len(x) for x in data.input_ids]
                   if isinstance(data, D.EncodedTexts) and hp.get("length_bucketing") else None)
        return D.epoch_batches(len(data), hp["batch_size"], self.cfg.seed, epoch, lengths)

    def _eval_batches(self) -> list[list[int]]:
        data, size = self.val_data, self.cfg.hp("eval_batch_size")
        if isinstance(data, D.EncodedTexts):
            return D.by_length([len(x) for x in data.input_ids], size)
        return D.chunks(range(len(data)), size)

    def _batches(self, data, batch_list, start: int = 0, train: bool = False):
        if isinstance(data, D.FeatureData):
            return D.feature_batches(data, batch_list, start)
        return D.batches(data, batch_list, self.pad_id, start=start)

    def _export(self, path: Path, extra: dict) -> None:
        export(self.model, self.tokenizer, self.cfg.labels, path,
               {**extra, "max_length": self.cfg.hp("max_length")})

    # -- train -------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run every epoch (or until a callback requests a stop); evaluate and checkpoint each.
        After resume(), it continues from the saved step as if never interrupted."""
        hp, state, control = self.cfg.hyperparameters, self.state, Control()
        loss_fn = torch.nn.CrossEntropyLoss()
        first_epoch, first_batch, (loss_sum, loss_n) = self._position
        self.cb.on_train_begin(state, control)
        for epoch in range(first_epoch, hp["epochs"] + 1):
            state.epoch = epoch
            self.model.train()
            epoch_batches = self._epoch_batches(epoch)
            batch_idx = first_batch if epoch == first_epoch else 0
            if epoch != first_epoch:
                loss_sum, loss_n = 0.0, 0
            t0 = time.perf_counter()
            for inputs, labels in self._batches(self.train_data, epoch_batches, start=batch_idx,
                                                train=True):
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

    def resume(self, path: Path) -> None:
        """Continue from a resume checkpoint written by an earlier attempt of the same run."""
        self.state, pos = checkpointing.load(path, model=self.model, optimizer=self.optimizer,
                                             scheduler=self.scheduler)
        self._position = (pos["epoch"], pos["batch"], (pos["loss_sum"], pos["loss_n"]))

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
        batch_list = self._eval_batches()
        loss_sum, preds = 0.0, [0] * len(self.val_data)
        for idx, (inputs, labels) in zip(batch_list, self._batches(self.val_data, batch_list),
                                         strict=True):
            with autocast(self.cfg.device, self.autocast_dtype):
                logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
            loss_sum += torch.nn.functional.cross_entropy(
                logits.float(), labels.to(self.device), reduction="sum").item()
            for i, p in zip(idx, logits.argmax(-1).tolist(), strict=True):
                preds[i] = p
        report = classification_report(self.val_data.labels, preds, self.cfg.labels)
        n = max(len(self.val_data), 1)
        metrics = {"val_loss": loss_sum / n, "val_accuracy": report["accuracy"],
                   "val_macro_f1": report["macro_f1"]}
        return metrics, report

    # -- checkpoint --------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Export the current weights as a loadable directory under work_dir."""
        path = self.work_dir / f"step-{self.state.step:08d}"
        self._export(path, {"method": self.cfg.method, "step": self.state.step,
                            "epoch": self.state.epoch})
        return path

    def cleanup(self) -> None:
        """Drop the model and optimizer so a long-lived worker gives their memory back."""
        for attr in ("model", "optimizer", "scheduler", "train_data", "val_data"):
            self.__dict__.pop(attr, None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class ImageClassificationRecipe(TextClassificationRecipe):
    """The same loop on images: a torchvision network, images read from the dataset's ZIP and
    decoded in the training process (so augmentation draws from the saved RNG: resume is exact)."""

    def __init__(self, config: TrainConfig, base_dir: Path, work_dir: Path, *args,
                 architecture: str, weights_path: Path | None, zip_path: Path, **kwargs):
        super().__init__(config, base_dir, work_dir, *args, **kwargs)
        self.architecture, self.weights_path, self.zip_path = architecture, weights_path, zip_path

    def _prepare(self, train_x, train_labels, val_x, val_labels) -> torch.nn.Module:
        from app.ml import vision

        hp = self.cfg.hyperparameters
        self.pre = vision.Preprocess(hp["image_size"])
        self.train_tf = self.pre.train_transform(bool(hp["augment"]), bool(hp["hflip"]))
        self.eval_tf = self.pre.eval_transform()
        self.train_data = D.MemberList(list(train_x), list(train_labels))
        self.val_data = D.MemberList(list(val_x), list(val_labels))
        state = vision.load_weights(self.weights_path) if self.weights_path else None
        model = vision.VisionClassifier(self.architecture, len(self.cfg.labels), state)
        return vision.apply_method(model, self.cfg.method, hp)

    def _batches(self, data, batch_list, start: int = 0, train: bool = False):
        import zipfile

        from app.ml.vision import decode_image

        tf = self.train_tf if train else self.eval_tf
        with zipfile.ZipFile(self.zip_path) as zf:
            for idx in batch_list[start:]:
                pixels = torch.stack([tf(decode_image(zf.read(data.members[i]))) for i in idx])
                yield {"pixel_values": pixels}, torch.tensor([data.labels[i] for i in idx])

    def _export(self, path: Path, extra: dict) -> None:
        from app.ml import vision

        vision.export(self.model, self.cfg.labels, self.pre, path, extra)
