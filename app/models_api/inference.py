"""Fine-tuned models kept loaded in the API process: a memory-bounded LRU cache that loads each
model once, and a micro-batcher per model that runs the forward passes off the event loop.
`head` and `lora` text models with equal encoder weights and tokenizer files share that encoder
(a Backbone, loaded once; app.ml.sharing) and its batcher; predict_many() asks several models on
one base in one encoder pass."""
import base64
import io
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from app.config import get_settings
from app.ml import explain as ml_explain
from app.ml import sharing, vision
from app.ml.data import collate, text_windows
from app.ml.modeling import (ADAPT_FILE, WEIGHTS_FILE, TextClassifier, load_exported,
                             load_tokenizer)
from app.ml.modeling_adapt import build_encoder, pool_windows
from app.ml.precision import autocast, autocast_dtype
from app.models_api.batching import Arrival, Batcher
from app.observability import record_model_cache, watch_loaded_models

log = logging.getLogger(__name__)


def _top(probs: torch.Tensor, labels: list[str], top_ks: list[int]) -> list[dict]:
    scores, idx = probs.topk(min(max(top_ks), len(labels)), dim=-1)
    out = []
    for row_s, row_i, k in zip(scores.tolist(), idx.tolist(), top_ks, strict=True):
        top = [{"label": labels[i], "score": s} for s, i in zip(row_s[:k], row_i[:k], strict=True)]
        out.append({"label": top[0]["label"], "score": top[0]["score"], "top": top})
    return out


def mark_unsure(predictions: list[dict], min_confidence: float | None,
                thresholds: dict[str, float | None] | None) -> list[dict]:
    """Each prediction with `unsure`: its score is below the caller's min_confidence or (without
    one) below the threshold its model learned for the predicted label; an unsure prediction's
    label is null (its `top` still ranks every label)."""
    out = []
    for pred in predictions:
        limit = (min_confidence if min_confidence is not None
                 else (thresholds or {}).get(pred["label"], 0.0))
        unsure = limit is None or pred["score"] < limit
        out.append({**pred, "label": None if unsure else pred["label"], "unsure": unsure})
    return out


class _Predictor:
    """Shared by text and image models: calibrated probabilities (softmax of logits / the
    temperature fitted after training, app.ml.calibration) for a list of inputs, directly or
    through the model's batcher."""

    labels: list[str]
    device: str
    meta: dict
    dtype: torch.dtype | None = None
    batcher: Batcher | None = None

    @property
    def temperature(self) -> float:
        return float((self.meta.get("calibration") or {}).get("temperature") or 1.0)

    @property
    def thresholds(self) -> dict[str, float | None] | None:
        """Per-label confidence thresholds learned on the validation data (target_precision)."""
        return (self.meta.get("calibration") or {}).get("thresholds")

    def probabilities(self, inputs: list) -> torch.Tensor:
        raise NotImplementedError

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.float() / self.temperature).softmax(-1)

    def pass_key(self) -> tuple | None:
        """What models must have alike to run in one backbone pass (run_many); None: alone."""
        return None

    def group_probabilities(self, group: list["_Predictor"], inputs: list) -> list[torch.Tensor]:
        """Each of `group`'s probabilities for the inputs (models of one pass_key, self first)."""
        return [self.probabilities(inputs)]

    @torch.inference_mode()
    def run_batch(self, inputs: list, top_ks: list[int]) -> list[dict]:
        with autocast(self.device, self.dtype):
            probs = self.probabilities(inputs)
        return _top(probs.float(), self.labels, top_ks)

    def start_batching(self, max_batch: int, max_wait_s: float, name: str) -> None:
        self.batcher = Batcher(self.run_batch, max_batch, max_wait_s, name=f"predict-{name}")

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def explain(self, inputs: list, targets: list[int | None], steps: int, top_k: int,
                passes: ml_explain.Passes | None = None) -> list[dict]:
        """Each input's prediction plus its attributions (float32, with gradients: never on
        the batcher's thread). One explanation at a time per model: each is a batch already.
        `passes`: its forward/backward passes, counted and stopped (ml_explain.Abandoned)."""
        with self._explain_lock:
            found = self.attributions(inputs, targets, steps, passes)
        out = []
        for item, pred in zip(found, _top(torch.stack([e.probs for e in found]).float(),
                                          self.labels, [top_k] * len(found)), strict=True):
            out.append({**pred, "target": self.labels[item.target], **self.render(item)})
        return out

    def attributions(self, inputs: list, targets: list[int | None], steps: int,
                     passes: ml_explain.Passes | None = None) -> list[ml_explain.Explanation]:
        raise NotImplementedError

    def render(self, item: ml_explain.Explanation) -> dict:
        raise NotImplementedError

    def nbytes(self) -> int:
        module = getattr(self, "model", None) or getattr(self, "net")
        return sum(t.numel() * t.element_size()
                   for t in (*module.parameters(), *module.buffers()))


class Predictor(_Predictor):
    backbone = None
    CHUNK = 16  # texts per forward pass within a batch (sorted by length first)

    def __init__(self, ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.model, self.tokenizer, self.meta = load_exported(ckpt_dir, device)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.labels: list[str] = self.meta["labels"]
        self.max_length: int = self.meta.get("max_length", 128)
        self.device, self.dtype = device, dtype
        self._explain_lock = threading.Lock()

    def windows(self, texts: list[str]) -> list[list[list[int]]]:
        """Each text's token ids: one window, or (chunking) the windows it was trained with."""
        return text_windows(self.tokenizer, texts, self.max_length, self.meta.get("chunking"))

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Sorted by length and run in chunks of at most CHUNK texts, each padded only to its
        own longest: a gathered batch of mixed lengths wastes little compute on padding."""
        chunking = self.meta.get("chunking")
        windows = self.windows(texts)
        order = sorted(range(len(texts)), key=lambda i: sum(map(len, windows[i])))
        out = torch.empty(len(texts), len(self.labels))
        for c in range(0, len(order), self.CHUNK):
            idx = order[c: c + self.CHUNK]
            flat = [(row, w) for row, i in enumerate(idx) for w in windows[i]]
            batch = collate([w for _, w in flat], self.pad_id)
            if chunking:
                batch["doc"] = torch.tensor([row for row, _ in flat], dtype=torch.long)
            logits = self.model(**{k: v.to(self.device) for k, v in batch.items()})
            out[idx] = (logits.float() / self.temperature).softmax(-1).cpu()
        return out

    method = ml_explain.TEXT_METHOD

    def attributions(self, texts: list[str], targets: list[int | None], steps: int,
                     passes: ml_explain.Passes | None = None) -> list[ml_explain.Explanation]:
        return ml_explain.explain_texts(self.model, self.tokenizer, texts, self.max_length,
                                        targets, steps, self.device, self.temperature,
                                        chunking=self.meta.get("chunking"), passes=passes)

    def render(self, item: ml_explain.Explanation) -> dict:
        return {"words": [{"word": w, "start": s, "end": e, "score": score}
                          for w, s, e, score in item.words], "truncated": item.truncated}


class NotShareable(Exception):
    """The checkpoint's record does not hold for its files: it loads as a whole copy."""


def backbone_key(weights: str, tokenizer: str, device: str) -> str:
    """What models must have alike to share a backbone: its weights' fingerprint, its
    tokenizer files' (texts are tokenized once for all of them), and the device."""
    return f"{weights}:{tokenizer}@{device}"


class Backbone:
    """One encoder (and its tokenizer; or an image network without its head, and no tokenizer)
    in memory, shared by every loaded model on it (key: backbone_key); `exact`: loaded as saved
    (a head model's), not rebuilt from a LoRA model's merged weights."""

    def __init__(self, key: str, encoder: torch.nn.Module, tokenizer, base_model: str, exact: bool):
        self.key, self.encoder, self.tokenizer = key, encoder.eval(), tokenizer
        self.base_model, self.exact, self.users = base_model, exact, 0
        self.router = sharing.AdapterRouter(encoder)
        self.batcher: Batcher | None = None

    def start_batching(self, max_batch: int, max_wait_s: float) -> None:
        """One batcher for every model on this backbone: predict requests for different models
        arriving together run as one mixed batch (each row its own head and adapter)."""
        if self.batcher is None:
            self.batcher = Batcher(run_mixed, max_batch, max_wait_s,
                                   name=f"predict-backbone-{self.key[:12]}")

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size()
                   for t in (*self.encoder.parameters(), *self.encoder.buffers()))

    def labels(self) -> dict[str, str]:
        """/metrics' labels: its base, its weights' and its tokenizer's fingerprints (short)."""
        weights, _, tokenizer = self.key.split("@")[0].partition(":")
        return {"base_model": self.base_model, "fingerprint": weights[:12],
                "tokenizer": tokenizer[:12]}

    def restore(self, weights: Path) -> None:
        """Overwrite rebuilt weights in place with a head model's exact ones (every user sees
        them)."""
        self.encoder.load_state_dict(_encoder_state(weights))
        self.exact = True


class Backbones:
    """The shared encoders, by fingerprint and device, each kept while a loaded model uses it."""

    def __init__(self):
        self._items: dict[str, Backbone] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, make: Callable[[], Backbone]) -> Backbone:
        with self._lock:  # loads are rare: one at a time keeps a backbone from loading twice
            backbone = self._items.get(key) or make()
            self._items[key] = backbone
            backbone.users += 1
            return backbone

    def release(self, backbone: Backbone) -> None:
        with self._lock:
            backbone.users -= 1
            if backbone.users <= 0:
                self._items.pop(backbone.key, None)
                backbone.close()

    def loaded(self) -> list[Backbone]:
        with self._lock:
            return list(self._items.values())


_backbones = Backbones()


def _base_name(config: dict) -> str:
    return Path(config["adapt_encoder"].get("_name_or_path") or "unknown").name


def _encoder_state(weights: Path) -> dict[str, torch.Tensor]:
    return {k.removeprefix("encoder."): v for k, v in load_file(str(weights)).items()
            if k.startswith("encoder.")}


def _encoder_from(ckpt_dir: Path, config: dict, device: str) -> torch.nn.Module:
    encoder = build_encoder(config["adapt_encoder"])
    encoder.load_state_dict(_encoder_state(ckpt_dir / WEIGHTS_FILE))
    return encoder.to(device)


class _OnSharedBackbone:
    """A model on a shared Backbone: its requests go to the backbone's batcher (one mixed batch
    for all its models), and closing it lets go of the backbone."""

    backbone: Backbone
    backbones: Backbones
    _closed = False

    def start_batching(self, max_batch: int, max_wait_s: float, name: str) -> None:
        self.backbone.start_batching(max_batch, max_wait_s)
        self.batcher = _OnBackbone(self)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.backbones.release(self.backbone)

    def rows_probabilities(self, rows: list[tuple]) -> list[torch.Tensor]:
        """The probabilities of (model, input) rows of models on this backbone (run_mixed)."""
        raise NotImplementedError


class SharedPredictor(_OnSharedBackbone, Predictor):
    """A text model on a shared backbone: its own head (and LoRA adapter), the encoder and the
    tokenizer borrowed. Predictions equal the whole model's (a LoRA model's up to the rounding of
    unmerging its weights)."""

    def __init__(self, ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None,
                 backbones: "Backbones | None" = None):
        ckpt_dir = Path(ckpt_dir)
        self.meta = json.loads((ckpt_dir / ADAPT_FILE).read_text())
        config = json.loads((ckpt_dir / "config.json").read_text())
        info, weights = self.meta["sharing"], ckpt_dir / WEIGHTS_FILE
        self.backbones = backbones if backbones is not None else _backbones
        self.delta, self.kind = None, info["kind"]
        tokenizer = sharing.tokenizer_fingerprint(ckpt_dir)
        if info["kind"] == "head":
            if sharing.file_fingerprint(weights) != info["encoder_fingerprint"]:
                raise NotShareable(f"{ckpt_dir}: its encoder is not the one recorded")
            key = backbone_key(info["encoder_fingerprint"], tokenizer, device)
            self.backbone = self.backbones.acquire(key, lambda: Backbone(
                key, _encoder_from(ckpt_dir, config, device), load_tokenizer(ckpt_dir),
                _base_name(config), exact=True))
            if not self.backbone.exact:
                self.backbone.restore(weights)
        elif info["kind"] == "lora":
            key = backbone_key(info["base_fingerprint"], tokenizer, device)
            self.delta = sharing.load_adapter(ckpt_dir / info["adapter"]).to(device)

            built = []

            def rebuilt() -> Backbone:
                encoder = _encoder_from(ckpt_dir, config, device)
                sharing.unmerge(encoder, self.delta)
                built.append(encoder)
                return Backbone(key, encoder, load_tokenizer(ckpt_dir), _base_name(config),
                                exact=False)
            self.backbone = self.backbones.acquire(key, rebuilt)
            if not built and not sharing.is_base_of(weights, self.backbone.encoder, self.delta):
                self.backbones.release(self.backbone)
                raise NotShareable(f"{ckpt_dir}: its weights less its adapter are not the base")
        else:
            raise NotShareable(f"{ckpt_dir}: sharing kind {info['kind']!r}")
        try:
            self.model = self._head_on_backbone(weights, device)
        except BaseException:
            self.backbones.release(self.backbone)
            raise
        self.tokenizer = self.backbone.tokenizer
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.labels, self.max_length = self.meta["labels"], self.meta.get("max_length", 128)
        self.device, self.dtype = device, dtype
        self._explain_lock = threading.Lock()

    def _head_on_backbone(self, weights: Path, device: str) -> TextClassifier:
        model = TextClassifier(self.backbone.encoder, len(self.meta["labels"]),
                               self.meta["pooling"], self.meta["normalize"], 0.0)
        with safe_open(str(weights), framework="pt") as st:
            model.head.load_state_dict({k: st.get_tensor(f"head.{k}") for k in ("weight", "bias")})
        model.scale = self.meta.get("scale", model.scale)
        model.head.to(device).eval()
        return model

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        return shared_probabilities([self], texts)[0]

    def attributions(self, texts: list[str], targets: list[int | None], steps: int,
                     passes: ml_explain.Passes | None = None) -> list[ml_explain.Explanation]:
        with self.backbone.router.rows([(slice(None), self.delta)]):
            return super().attributions(texts, targets, steps, passes)

    def nbytes(self) -> int:
        return _bytes_of(self.model.head) + (self.delta.nbytes() if self.delta else 0)

    def pass_key(self) -> tuple:
        """Texts are tokenized once for a pass: its models window them alike."""
        return id(self.backbone), self.max_length, json.dumps(self.meta.get("chunking"))

    def group_probabilities(self, group: list, texts: list[str]) -> list[torch.Tensor]:
        return shared_probabilities(group, texts)

    def rows_probabilities(self, rows: list[tuple]) -> list[torch.Tensor]:
        return mixed_probabilities(rows)


def _bytes_of(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.parameters())


class _OnBackbone:
    """A shared model's batcher: its requests go to its backbone's batcher as (model, input)
    rows; closing it is its backbone's business."""

    def __init__(self, predictor: _OnSharedBackbone):
        self.predictor = predictor

    def submit(self, inputs: list, top_k: int, arrival: Arrival | None = None,
               caller: str | None = None) -> Future:
        return self.predictor.backbone.batcher.submit(
            [(self.predictor, x) for x in inputs], top_k, arrival, caller)

    def close(self) -> None:
        pass


@torch.inference_mode()
def run_mixed(rows: list[tuple[_OnSharedBackbone, object]], top_ks: list[int]) -> list[dict]:
    """A backbone batcher's batch: each (model, text or image) row's top predictions."""
    first = rows[0][0]
    with autocast(first.device, first.dtype):
        probs = first.rows_probabilities(rows)
    return [_top(pr[None].float(), p.labels, [k])[0]
            for (p, _), pr, k in zip(rows, probs, top_ks, strict=True)]


def mixed_probabilities(rows: list[tuple[SharedPredictor, str]]) -> list[torch.Tensor]:
    """Calibrated probabilities of (model, text) rows of models on one backbone: rows sorted by
    length and run in chunks of Predictor.CHUNK, each chunk one encoder pass whose rows of each
    adapter get that adapter's delta; each model's head on its own rows."""
    backbone, device = rows[0][0].backbone, rows[0][0].device
    windows: list = [None] * len(rows)
    by_model: dict[int, list[int]] = {}
    for r, (p, _) in enumerate(rows):
        by_model.setdefault(id(p), []).append(r)
    for members in by_model.values():
        p = rows[members[0]][0]
        for r, w in zip(members, p.windows([rows[r][1] for r in members]), strict=True):
            windows[r] = w
    order = sorted(range(len(rows)), key=lambda r: sum(map(len, windows[r])))
    out: list = [None] * len(rows)
    for c in range(0, len(order), Predictor.CHUNK):
        idx = sorted(order[c: c + Predictor.CHUNK],
                     key=lambda r: (id(rows[r][0].delta), id(rows[r][0])))
        flat = [(r, w) for r in idx for w in windows[r]]
        batch = {k: v.to(device) for k, v in
                 collate([w for _, w in flat], rows[idx[0]][0].pad_id).items()}
        spans = _spans([rows[r][0] for r, _ in flat])
        groups = [(slice(a, b), p.delta) for p, a, b in spans]
        with backbone.router.rows(groups):
            hidden = backbone.encoder(**batch).last_hidden_state
        for p, a, b in spans:
            logits = p.model.head(p.model.pooled(hidden[a:b], batch["attention_mask"][a:b]))
            owners = [r for r, _ in flat[a:b]]
            if p.meta.get("chunking"):
                firsts = list(dict.fromkeys(owners))
                doc = torch.tensor([firsts.index(r) for r in owners], device=logits.device)
                logits, owners = pool_windows(logits, doc), firsts
            probs = (logits.float() / p.temperature).softmax(-1).cpu()
            for r, row in zip(owners, probs, strict=True):
                out[r] = row
    return out


def _spans(models: list) -> list[tuple[SharedPredictor, int, int]]:
    """(model, start, end) of each run of consecutive rows of one model."""
    spans: list = []
    for i, p in enumerate(models):
        if spans and spans[-1][0] is p:
            spans[-1] = (p, spans[-1][1], i + 1)
        else:
            spans.append((p, i, i + 1))
    return spans


def shared_probabilities(predictors: list[SharedPredictor], texts: list[str]) -> list[torch.Tensor]:
    """Calibrated probabilities of each model (all on one backbone, tokenizing alike) for the
    texts, in one encoder pass per chunk: the texts once per distinct adapter (head models share
    the base rows), each adapter's delta added to its rows only; chunks as Predictor makes them."""
    first = predictors[0]
    backbone, chunking = first.backbone, first.meta.get("chunking")
    windows = first.windows(texts)
    adapters: list[sharing.LoraDelta | None] = []
    for p in predictors:
        if not any(p.delta is d for d in adapters):
            adapters.append(p.delta)
    variant = [next(v for v, d in enumerate(adapters) if d is p.delta) for p in predictors]
    order = sorted(range(len(texts)), key=lambda i: sum(map(len, windows[i])))
    outs = [torch.empty(len(texts), len(p.labels)) for p in predictors]
    for c in range(0, len(order), Predictor.CHUNK):
        idx = order[c: c + Predictor.CHUNK]
        flat = [(row, w) for row, i in enumerate(idx) for w in windows[i]]
        n = len(flat)
        batch = {k: v.to(first.device) for k, v in
                 collate([w for _, w in flat] * len(adapters), first.pad_id).items()}
        groups = [(slice(v * n, (v + 1) * n), d) for v, d in enumerate(adapters)]
        with backbone.router.rows(groups):
            hidden = backbone.encoder(**batch).last_hidden_state
        doc = torch.tensor([row for row, _ in flat], dtype=torch.long, device=first.device)
        for out, p, v in zip(outs, predictors, variant, strict=True):
            rows = slice(v * n, (v + 1) * n)
            logits = p.model.head(p.model.pooled(hidden[rows], batch["attention_mask"][rows]))
            if chunking:
                logits = pool_windows(logits, doc)
            out[idx] = (logits.float() / p.temperature).softmax(-1).cpu()
    return outs


class ImagePredictor(_Predictor):
    def __init__(self, ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.net, pre, self.meta = vision.load_exported(ckpt_dir, device)
        self.transform, self.labels = pre.eval_transform(), self.meta["labels"]
        self.pre = pre
        self.device, self.dtype = device, dtype
        self._explain_lock = threading.Lock()

    def pixels(self, images: list) -> torch.Tensor:
        return torch.stack([self.transform(img) for img in images]).to(self.device)

    def probabilities(self, images: list) -> torch.Tensor:
        return self.calibrated(self.net(self.pixels(images)))

    method = ml_explain.IMAGE_METHOD

    def attributions(self, images: list, targets: list[int | None], steps: int,
                     passes: ml_explain.Passes | None = None) -> list[ml_explain.Explanation]:
        return ml_explain.explain_images(self.net, self.pre, images, targets, steps,
                                         self.device, self.temperature, passes)

    def render(self, item: ml_explain.Explanation) -> dict:
        return {"heatmap": heatmap_png(item.heatmap)}


class SharedImagePredictor(_OnSharedBackbone, ImagePredictor):
    """An image `head` model on a shared backbone: the frozen network without its head, loaded
    once for every head model on equal weights (app.ml.vision.backbone_fingerprint); only the
    head is its own. Predictions equal the whole network's."""

    kind = "head"

    def __init__(self, ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None,
                 backbones: Backbones | None = None):
        ckpt_dir = Path(ckpt_dir)
        self.meta = json.loads((ckpt_dir / ADAPT_FILE).read_text())
        arch = self.meta["architecture"]
        found = vision.backbone_fingerprint(ckpt_dir / WEIGHTS_FILE, arch)
        if (self.meta.get("sharing") or {}).get("encoder_fingerprint", found) != found:
            raise NotShareable(f"{ckpt_dir}: its network is not the one recorded")
        self.backbones = backbones if backbones is not None else _backbones
        key = backbone_key(found, "", device)
        self.backbone = self.backbones.acquire(key, lambda: Backbone(
            key, vision.load_backbone(ckpt_dir, device), None, arch, exact=True))
        try:
            self.head = vision.load_head(ckpt_dir, arch, device)
            if self.head.out_features != len(self.meta["labels"]):
                raise ValueError(f"{ckpt_dir}: a head of {self.head.out_features} classes "
                                 f"for {len(self.meta['labels'])} labels")
        except BaseException:
            self.backbones.release(self.backbone)
            raise
        self.net = torch.nn.Sequential(self.backbone.encoder, self.head)  # (explain's)
        self.pre = vision.preprocess_of(self.meta)
        self.transform, self.labels = self.pre.eval_transform(), self.meta["labels"]
        self.device, self.dtype = device, dtype
        self._explain_lock = threading.Lock()

    def nbytes(self) -> int:
        return _bytes_of(self.head)

    def pass_key(self) -> tuple:
        """Images are transformed once for a pass: its models preprocess them alike."""
        return id(self.backbone), self.pre.image_size, tuple(self.pre.mean), tuple(self.pre.std)

    def group_probabilities(self, group: list, images: list) -> list[torch.Tensor]:
        """The backbone once for the images; each model's head on its features."""
        features = self.backbone.encoder(self.pixels(images))
        return [p.calibrated(p.head(features)) for p in group]

    def rows_probabilities(self, rows: list[tuple]) -> list[torch.Tensor]:
        """One backbone pass per preprocessing among the rows' models; each head on its rows."""
        out: list = [None] * len(rows)
        passes: dict[tuple, dict[SharedImagePredictor, list[int]]] = {}
        for r, (p, _) in enumerate(rows):
            passes.setdefault(p.pass_key(), {}).setdefault(p, []).append(r)
        for by_model in passes.values():
            order = [r for members in by_model.values() for r in members]
            first = rows[order[0]][0]
            features = first.backbone.encoder(first.pixels([rows[r][1] for r in order]))
            start = 0
            for p, members in by_model.items():
                probs = p.calibrated(p.head(features[start: start + len(members)]))
                for r, row in zip(members, probs, strict=True):
                    out[r] = row
                start += len(members)
        return out


def heatmap_png(heat) -> dict:
    """A [H, W] map in [0, 1] as an 8-bit greyscale PNG (255 = the image's strongest evidence),
    base64-encoded, with its size: the input image's."""
    buf = io.BytesIO()
    Image.fromarray((heat * 255).round().astype("uint8"), mode="L").save(buf, format="PNG")
    height, width = heat.shape
    return {"width": width, "height": height, "format": "png",
            "png_base64": base64.b64encode(buf.getvalue()).decode()}


def load_predictor(ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None,
                   backbones: Backbones | None = None) -> _Predictor:
    """head and lora text models, and head image models, on a shared backbone; models that
    share nothing (full, partial, text checkpoints older than app.ml.sharing) as whole copies."""
    meta = json.loads((Path(ckpt_dir) / ADAPT_FILE).read_text())
    image = meta["task"] == "image-classification"
    shared = SharedImagePredictor if image else SharedPredictor
    if (meta.get("method") == "head") if image else meta.get("sharing"):
        try:
            return shared(ckpt_dir, device, dtype, backbones)
        except (NotShareable, ValueError, KeyError, OSError) as exc:
            log.warning("loading %s as a whole copy: %s", ckpt_dir, exc)
    return (ImagePredictor if image else Predictor)(ckpt_dir, device, dtype)


def run_many(predictors: list[_Predictor], inputs: list,
             top_k: int | None = None) -> list[list[dict]]:
    """Each predictor's predictions for the same inputs; models on one backbone that tokenize
    (or preprocess) alike share one backbone pass (LoRA models as a mixed-adapter batch), others
    run alone."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(predictors):
        groups.setdefault(p.pass_key() or ("alone", i), []).append(i)
    results: list[list[dict]] = [[] for _ in predictors]
    for members in groups.values():
        group = [predictors[i] for i in members]
        with torch.inference_mode(), autocast(group[0].device, group[0].dtype):
            probs = group[0].group_probabilities(group, inputs)
        for i, p, pr in zip(members, group, probs, strict=True):
            results[i] = _top(pr.float(), p.labels,
                              [top_k or min(len(p.labels), 5)] * len(inputs))
    return results


def predict_many(refs: list[tuple[str, Callable[[], Path]]], inputs: list,
                 top_k: int | None = None, min_confidence: float | None = None,
                 cache: "ModelCache | None" = None) -> list[list[dict]]:
    """Each model's predictions (by cache key and checkpoint path) for the same inputs, unsure
    ones marked as single predict marks them; loaded through the model cache (this process's,
    or a model server's), so a fan-out on one base runs the backbone once."""
    cache = cache or model_cache()
    predictors = [cache.get(key, path) for key, path in refs]
    return [mark_unsure(found, min_confidence, p.thresholds)
            for p, found in zip(predictors, run_many(predictors, inputs, top_k), strict=True)]


class ModelCache:
    """At most `size` encoders (whole models, and shared backbones however many models they
    serve) and `max_bytes` of weights (the newest always stays); concurrent first requests for
    one model load it once. on_lookup(hit) observes every get()."""

    def __init__(self, size: int, max_bytes: int = 0, load: Callable[[Path], _Predictor] = load_predictor,
                 on_lookup: Callable[[bool], None] | None = None):
        self.size, self.max_bytes, self._load, self._on_lookup = size, max_bytes, load, on_lookup
        self._items: OrderedDict[str, tuple[_Predictor, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, path: Path | Callable[[], Path]) -> _Predictor:
        """The predictor for key, loaded from path (or path(), called only on a miss)."""
        if (loaded := self.peek(key)) is not None:
            return loaded
        with self._lock:
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._items:
                    return self._hit(True, self._items[key][0])
            predictor = self._load(path() if callable(path) else path)
            with self._lock:
                self._items[key] = (predictor, predictor.nbytes())
                self._loading.pop(key, None)
                self._evict()
            return self._hit(False, predictor)

    def peek(self, key: str) -> _Predictor | None:
        """The predictor for key if it is loaded (a hit, as get() counts it), else None: never
        waits for a load, so an event loop may ask."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            predictor = self._items[key][0]
        return self._hit(True, predictor)

    def _hit(self, hit: bool, predictor: _Predictor) -> _Predictor:
        if self._on_lookup is not None:
            self._on_lookup(hit)
        return predictor

    def encoders(self) -> int:
        """Whole models plus the distinct backbones the others share."""
        backbones = {id(b) for p, _ in self._items.values()
                     if (b := getattr(p, "backbone", None)) is not None}
        return len(backbones) + sum(getattr(p, "backbone", None) is None
                                    for p, _ in self._items.values())

    def nbytes(self) -> int:
        """The models' own weights plus each backbone they share, once."""
        backbones = {id(b): b.nbytes() for p, _ in self._items.values()
                     if (b := getattr(p, "backbone", None)) is not None}
        return sum(n for _, n in self._items.values()) + sum(backbones.values())

    def loaded(self) -> list[tuple[str, _Predictor, int]]:
        with self._lock:
            return [(key, p, n) for key, (p, n) in self._items.items()]

    def _evict(self) -> None:
        while len(self._items) > 1 and (
                self.encoders() > self.size
                or (self.max_bytes and self.nbytes() > self.max_bytes)):
            _, (old, _) = self._items.popitem(last=False)
            old.close()

    def drop(self, key: str) -> None:
        with self._lock:
            item = self._items.pop(key, None)
        if item is not None:
            item[0].close()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        """Unload every model (their batcher threads end)."""
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for predictor, _ in items:
            predictor.close()


_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def _load_for_serving(path: Path) -> _Predictor:
    settings = get_settings()
    device = "cuda" if torch.cuda.is_available() and settings.worker_device != "cpu" else "cpu"
    predictor = load_predictor(path, device, autocast_dtype(device, settings.inference_precision))
    predictor.start_batching(settings.predict_max_batch, settings.predict_max_wait_ms / 1000,
                             name=Path(path).name)
    return predictor


def new_model_cache(on_lookup: Callable[[bool], None] | None = None) -> ModelCache:
    """An empty cache as the settings size it, loading models for serving (batched)."""
    settings = get_settings()
    return ModelCache(settings.model_cache_size, settings.model_cache_bytes,
                      load=_load_for_serving, on_lookup=on_lookup)


def model_cache() -> ModelCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = new_model_cache(_observe_lookup)
            watch_loaded_models(lambda: loaded_memory(_cache))
        return _cache


def loaded_memory(cache: ModelCache | None) -> tuple[list[tuple[dict, int]], list[tuple[dict, int]]]:
    """(backbone labels and bytes, model labels and bytes) of a cache, for /metrics."""
    if cache is None:
        return [], []
    items = cache.loaded()
    backbones = {id(b): b for _, p, _ in items if (b := getattr(p, "backbone", None)) is not None}
    return ([(b.labels(), b.nbytes()) for b in backbones.values()],
            [({"model": key, "kind": getattr(p, "kind", "whole")}, n) for key, p, n in items])


def close_model_cache() -> None:
    """Unload every model; the next model_cache() starts an empty one."""
    global _cache
    with _cache_lock:
        cache, _cache = _cache, None
    if cache is not None:
        cache.clear()


def _observe_lookup(hit: bool) -> None:
    record_model_cache(hit)
