"""Task components: what differs between text and image classification (data, model, batches,
export), plugged into the one training loop of app.ml.recipe.Recipe.

A task implements `Task`: `prepare` builds the model and prepares the data once; then
`train_batches(epoch, start)` yields an epoch's (inputs, labels) from batch `start` on (a function
of (seed, epoch) only, so a resumed run replays the same order), `eval_batches()` yields
(example indices, inputs, labels) covering the validation set once, and `export` writes a loadable
checkpoint directory. With `shard` = (rank, processes), both yield only that process's share
(app.ml.data.shard_batches; labels of padding examples are IGNORE_LABEL).
"""
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from app.ml import data as D
from app.ml import modeling, vision
from app.ml.config import TrainConfig
from app.ml.feature_cache import FeatureCache, example_key
from app.ml.image_loader import ImageExamples, collate, image_batches
from app.ml.modeling_adapt import pool_windows
from app.ml.precision import autocast, pad_multiple, train_autocast_dtype

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]          # (model inputs, label indices)
EvalBatch = tuple[list[int], dict[str, torch.Tensor], torch.Tensor]  # + example indices


class Task(Protocol):
    feature_stats: dict | None  # what precomputing features cost (text `head`), else None
    # (rank, processes): this process's share of every training batch and of the validation
    # batches (set by the recipe before prepare; (0, 1) for a single process)
    shard: tuple[int, int]

    def prepare(self, cfg: TrainConfig, train: D.Examples,
                validation: D.Examples) -> torch.nn.Module:
        """Prepare the data once; the model with the method's weights set to train (on CPU)."""

    def batch_list(self, epoch: int) -> list[list[int]]:
        """The epoch's training batches as example indices (train_batches yields these)."""

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The epoch's training batches, from batch index `start` on."""

    def eval_batches(self) -> Iterator[EvalBatch]:
        """Every validation example once: (their indices, inputs, labels) per batch."""

    def export(self, model: torch.nn.Module, path: Path, extra: dict) -> None:
        """Write the model as a self-contained checkpoint directory."""


# -- text ---------------------------------------------------------------------------------------
@dataclass
class _Tokens:
    """Token ids, padded per batch; batches can be length-bucketed."""

    data: D.EncodedTexts
    pad_id: int
    multiple: int = 1  # lengths padded to a multiple of this (app.ml.precision.pad_multiple)

    def lengths(self) -> list[int]:
        return [len(x) for x in self.data.input_ids]

    def batches(self, batch_list: list[list[int]], start: int = 0) -> Iterator[Batch]:
        return D.batches(self.data, batch_list, self.pad_id, start=start, multiple=self.multiple)


@dataclass
class _Features:
    """Frozen-encoder features, one row per example: no lengths to bucket by."""

    data: D.FeatureData

    def lengths(self) -> None:
        return None

    def batches(self, batch_list: list[list[int]], start: int = 0) -> Iterator[Batch]:
        return D.feature_batches(self.data, batch_list, start)


@dataclass
class _Windows:
    """Long texts as overlapping windows: a batch holds every window of its examples."""

    data: D.WindowedTexts
    pad_id: int
    multiple: int = 1

    def lengths(self) -> list[int]:
        return [sum(map(len, w)) for w in self.data.windows]

    def batches(self, batch_list: list[list[int]], start: int = 0) -> Iterator[Batch]:
        return D.window_batches(self.data, batch_list, self.pad_id, start=start,
                                multiple=self.multiple)


class TextTask:
    """A transformers encoder + head on texts: each text tokenised once, length-bucketed training
    batches; for method `head` (with precompute_features) the frozen encoder runs once per
    example, its pooled features shared across jobs through the FeatureCache."""

    def __init__(self, model_dir: Path, *, feature_cache: FeatureCache | None = None,
                 feature_namespace: str = "", precompute_features: bool = True,
                 build: Callable[[TrainConfig], torch.nn.Module] | None = None):
        self.model_dir = Path(model_dir)  # the tokenizer's (and, without build, the model's)
        self.build = build  # the initial model instead of the base model's (distill, prune)
        self.feature_cache = feature_cache
        self.feature_namespace = feature_namespace or str(self.model_dir)
        self.precompute_features = precompute_features  # False: the encoder runs every epoch
        self.feature_stats: dict | None = None
        self.data_report: dict | None = None  # texts over max_length; chunking on or off
        self.chunking = False
        self.shard = (0, 1)

    def prepare(self, cfg: TrainConfig, train: D.Examples,
                validation: D.Examples) -> torch.nn.Module:
        """Tokenise every text once; the batch source (token ids or features) is chosen here."""
        self.cfg, hp = cfg, cfg.hyperparameters
        self.tokenizer = modeling.load_tokenizer(self.model_dir)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.pad_multiple = pad_multiple(cfg.device)
        self.chunking = self._choose_chunking(hp, train, validation)
        train_ids, val_ids = self._encode(train), self._encode(validation)
        model = (self.build(cfg) if self.build is not None
                 else modeling.build_classifier(self.model_dir, cfg.labels, cfg.method, hp))
        if cfg.method == "head" and self.precompute_features:
            # The encoder is fixed: run it once per example, not once per example per epoch.
            model.to(cfg.device)
            train_f, val_f = self._featurize_windows(model, train_ids, val_ids) if (
                self.chunking) else self._featurize(model, train_ids, val_ids)
            self._train, self._val = _Features(train_f), _Features(val_f)
        else:
            source, m = _Windows if self.chunking else _Tokens, self.pad_multiple
            self._train, self._val = (source(train_ids, self.pad_id, m),
                                      source(val_ids, self.pad_id, m))
        self._n_train = len(train_ids)
        self._train_lengths = self._train.lengths() if hp.get("length_bucketing") else None
        val_lengths, size = self._val.lengths(), hp["eval_batch_size"]
        self._eval_list = (D.by_length(val_lengths, size) if val_lengths is not None
                           else D.chunks(range(len(val_ids)), size))
        return model

    def _choose_chunking(self, hp: dict, train: D.Examples, validation: D.Examples) -> bool:
        """Chunking as the job asked: 1 on, 0 off, None (auto) on when most training texts are
        longer than max_length; jobs from before chunking existed (no key) never chunk. Sets
        data_report: how many texts overflow, and how many are still cut."""
        mode, limit = hp.get("chunking", 0), hp["max_length"]
        counts = D.token_counts(self.tokenizer, [*train.inputs, *validation.inputs])
        over = sum(c > limit for c in counts)
        # (labelled texts decide: a distill job's augmented copies are shorter n-grams of them)
        labelled = [c for c, y in zip(counts, train.labels) if y != D.IGNORE_LABEL]
        over_train = sum(c > limit for c in labelled)
        on = bool(mode) if mode is not None else over_train * 2 > len(labelled)
        cut = over
        if on:
            specials = self.tokenizer.num_special_tokens_to_add()
            body = limit - specials
            reach = body + (hp["max_chunks"] - 1) * max(body - hp["chunk_overlap"], 1) + specials
            cut = sum(c > reach for c in counts)
        self.data_report = {"examples": len(counts), "max_length": limit,
                            "longer_than_max_length": over, "chunking": on,
                            "chosen": "auto" if mode is None else "hyperparameter",
                            "truncated_examples": cut}
        return on

    def _encode(self, examples: D.Examples) -> D.EncodedTexts | D.WindowedTexts:
        hp = self.cfg.hyperparameters
        if self.chunking:
            return D.encode_windows(self.tokenizer, examples.inputs, examples.labels,
                                    hp["max_length"], hp["chunk_overlap"], hp["max_chunks"])
        return D.encode(self.tokenizer, examples.inputs, examples.labels, hp["max_length"])

    def _featurize_windows(self, model, *datasets: D.WindowedTexts) -> list[D.FeatureData]:
        """Each window's features (cached per window), averaged per text: with a linear head,
        the mean of the windows' logits."""
        flat = [D.EncodedTexts([w for ws in ds.windows for w in ws], []) for ds in datasets]
        out = []
        for ds, feats in zip(datasets, self._featurize(model, *flat), strict=True):
            doc = torch.tensor([i for i, ws in enumerate(ds.windows) for _ in ws],
                               dtype=torch.long)
            pooled = (pool_windows(feats.features, doc) if len(doc)
                      else torch.empty(0))
            out.append(D.FeatureData(pooled, ds.labels))
        return out

    @torch.no_grad()
    def _featurize(self, model, *datasets: D.EncodedTexts) -> list[D.FeatureData]:
        """Each example's pooled features, from the shared cache where it has them."""
        cfg = self.cfg
        t0 = time.perf_counter()
        keys = [[example_key(ids) for ids in ds.input_ids] for ds in datasets]
        cached = self.feature_cache.load(self.feature_namespace) if self.feature_cache else {}
        todo = sorted({k: (d, i) for d, ks in enumerate(keys) for i, k in enumerate(ks)
                       if k not in cached}.items(),  # similar lengths together: little padding
                      key=lambda item: len(datasets[item[1][0]].input_ids[item[1][1]]))
        model.eval()
        computed: dict[str, torch.Tensor] = {}
        bs = cfg.hp("eval_batch_size")
        for b in range(0, len(todo), bs):
            chunk = todo[b: b + bs]
            inputs = D.collate([datasets[d].input_ids[i] for _, (d, i) in chunk], self.pad_id,
                               self.pad_multiple)
            with autocast(cfg.device, train_autocast_dtype(cfg.device, cfg.precision)):
                feats = model.features(**{k: v.to(cfg.device) for k, v in inputs.items()})
            computed.update((k, f.float().cpu()) for (k, _), f in zip(chunk, feats, strict=True))
        if self.feature_cache and computed:
            self.feature_cache.store(self.feature_namespace, {**cached, **computed})
        table = {**cached, **computed}
        seconds = time.perf_counter() - t0
        # The share of that time spent on the training examples (the first dataset): it is part
        # of training (the encoder pass of every step, done once), so the job's samples/s counts it.
        n_train = len(keys[0]) if keys else 0
        train_todo = sum(1 for _, (d, _) in todo if d == 0)
        share = (train_todo / len(todo) if todo
                 else n_train / max(sum(map(len, keys)), 1))
        self.feature_stats = {"examples": sum(map(len, keys)), "computed": len(computed),
                              "seconds": round(seconds, 2),
                              "train_seconds": round(seconds * share, 3)}
        return [D.FeatureData(torch.stack([table[k] for k in ks]) if ks else torch.empty(0),
                              ds.labels) for ks, ds in zip(keys, datasets, strict=True)]

    def train_features(self) -> torch.Tensor:
        """The training examples' pooled features, one row each (method head, precomputed)."""
        if not isinstance(self._train, _Features):
            raise ValueError("features are precomputed for method head only")
        return self._train.data.features

    def batch_list(self, epoch: int) -> list[list[int]]:
        """The epoch's training batches as example indices."""
        return D.epoch_batches(self._n_train, self.cfg.hp("batch_size"), self.cfg.seed, epoch,
                               self._train_lengths)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        mine, pad = D.shard_batches(self.batch_list(epoch), *self.shard)
        return D.without_padding(self._train.batches(mine, start), pad[start:])

    def probe_batch(self, size: int) -> Batch:
        """A training batch of the `size` longest examples (the most memory a step can take;
        repeated when the training set is smaller): app.ml.preflight measures with it."""
        lengths = self._train.lengths() or [0] * self._n_train
        longest = sorted(range(self._n_train), key=lambda i: -lengths[i])
        return next(self._train.batches([[longest[k % len(longest)] for k in range(size)]]))

    def units(self, batch_list: list[list[int]], validation: bool = False) -> int:
        """The padded tokens of these batches (their cost; examples for features)."""
        lengths = (self._val if validation else self._train).lengths()
        if lengths is None:
            return sum(map(len, batch_list))
        return sum(len(b) * max(lengths[i] for i in b) for b in batch_list if b)

    def eval_batch_list(self) -> list[list[int]]:
        return self._eval_list

    def eval_batches(self) -> Iterator[EvalBatch]:
        mine = self._eval_list[self.shard[0]::self.shard[1]]
        for idx, (inputs, labels) in zip(mine, self._val.batches(mine), strict=True):
            yield idx, inputs, labels

    def export(self, model: torch.nn.Module, path: Path, extra: dict) -> None:
        hp = self.cfg.hyperparameters
        chunking = ({"overlap": hp["chunk_overlap"], "max_chunks": hp["max_chunks"]}
                    if self.chunking else None)
        modeling.export(model, self.tokenizer, self.cfg.labels, path,
                        {**extra, "max_length": hp["max_length"], "chunking": chunking})


# -- images -------------------------------------------------------------------------------------
class ImageTask:
    """A torchvision network on images read from the dataset's ZIP, decoded and augmented by a
    DataLoader (app.ml.image_loader: worker processes and pinned memory on CUDA, in this process
    on CPU); augmentation draws are a function of (seed, epoch, example), so resume is exact."""

    feature_stats = None

    def __init__(self, architecture: str, weights_path: Path | None, images_zip: Path,
                 build: Callable[[TrainConfig], torch.nn.Module] | None = None):
        self.architecture, self.images_zip = architecture, Path(images_zip)
        self.weights_path = Path(weights_path) if weights_path else None
        self.build = build  # the initial model instead of the base model's (prune)
        self.shard = (0, 1)

    def prepare(self, cfg: TrainConfig, train: D.Examples,
                validation: D.Examples) -> torch.nn.Module:
        self.cfg, hp = cfg, cfg.hyperparameters
        self.pre = vision.preprocess_for(self.architecture, hp["image_size"])
        self.train_tf = self.pre.train_transform(bool(hp["augment"]), bool(hp["hflip"]))
        self.eval_tf = self.pre.eval_transform()
        self.train_data = D.MemberList(list(train.inputs), list(train.labels))
        self.val_data = D.MemberList(list(validation.inputs), list(validation.labels))
        self._eval_list = D.chunks(range(len(self.val_data)), hp["eval_batch_size"])
        if self.build is not None:  # every weight trains
            return self.build(cfg)
        state = vision.load_weights(self.weights_path) if self.weights_path else None
        model = vision.VisionClassifier(self.architecture, len(cfg.labels), state)
        return vision.apply_method(model, cfg.method, hp)

    def _examples(self, epoch: int | None) -> ImageExamples:
        """The training examples with epoch's augmentation draws; None: validation."""
        if epoch is None:
            return ImageExamples(self.images_zip, self.val_data, self.eval_tf)
        return ImageExamples(self.images_zip, self.train_data, self.train_tf,
                             (self.cfg.seed, epoch))

    def _batches(self, examples: ImageExamples, batch_list: list[list[int]]) -> Iterator[Batch]:
        return image_batches(examples, batch_list, device=self.cfg.device,
                             workers=self.cfg.loader_workers, seed=self.cfg.seed)

    def batch_list(self, epoch: int) -> list[list[int]]:
        return D.epoch_batches(len(self.train_data), self.cfg.hp("batch_size"), self.cfg.seed,
                               epoch)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        mine, pad = D.shard_batches(self.batch_list(epoch), *self.shard)
        return D.without_padding(self._batches(self._examples(epoch), mine[start:]),
                                 pad[start:])

    def probe_batch(self, size: int) -> Batch:
        """A training batch of `size` images (all the same size: any will do), made here."""
        examples, n = self._examples(1), len(self.train_data)
        return collate([examples[k % n] for k in range(size)])

    def units(self, batch_list: list[list[int]], validation: bool = False) -> int:
        return sum(map(len, batch_list))

    def eval_batch_list(self) -> list[list[int]]:
        return self._eval_list

    def eval_batches(self) -> Iterator[EvalBatch]:
        mine = self._eval_list[self.shard[0]::self.shard[1]]
        for idx, (inputs, labels) in zip(mine, self._batches(self._examples(None), mine),
                                         strict=True):
            yield idx, inputs, labels

    def export(self, model: torch.nn.Module, path: Path, extra: dict) -> None:
        vision.export(model, self.cfg.labels, self.pre, path, extra)
