"""Fine-tuned models kept loaded in the API process: a memory-bounded LRU cache that loads each
model once, and a micro-batcher per model that runs the forward passes off the event loop."""
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from app.config import get_settings
from app.ml.data import collate
from app.ml.modeling import load_exported
from app.ml.precision import autocast, autocast_dtype
from app.ml.vision import load_exported as load_vision
from app.models_api.batching import Batcher
from app.observability import record_model_cache


def _top(probs: torch.Tensor, labels: list[str], top_ks: list[int]) -> list[dict]:
    scores, idx = probs.topk(min(max(top_ks), len(labels)), dim=-1)
    out = []
    for row_s, row_i, k in zip(scores.tolist(), idx.tolist(), top_ks, strict=True):
        top = [{"label": labels[i], "score": s} for s, i in zip(row_s[:k], row_i[:k], strict=True)]
        out.append({"label": top[0]["label"], "score": top[0]["score"], "top": top})
    return out


class _Predictor:
    """Shared by text and image models: probabilities for a list of inputs, directly or through
    the model's batcher."""

    labels: list[str]
    device: str
    dtype: torch.dtype | None = None
    batcher: Batcher | None = None

    def probabilities(self, inputs: list) -> torch.Tensor:
        raise NotImplementedError

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

    def nbytes(self) -> int:
        module = getattr(self, "model", None) or getattr(self, "net")
        return sum(t.numel() * t.element_size()
                   for t in (*module.parameters(), *module.buffers()))


class Predictor(_Predictor):
    CHUNK = 16  # texts per forward pass within a batch (sorted by length first)

    def __init__(self, ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.model, self.tokenizer, self.meta = load_exported(ckpt_dir, device)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.labels: list[str] = self.meta["labels"]
        self.max_length: int = self.meta.get("max_length", 128)
        self.device, self.dtype = device, dtype

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Sorted by length and run in chunks of at most CHUNK texts, each padded only to its
        own longest: a gathered batch of mixed lengths wastes little compute on padding."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = torch.empty(len(ids), len(self.labels))
        for c in range(0, len(order), self.CHUNK):
            idx = order[c: c + self.CHUNK]
            batch = collate([ids[i] for i in idx], self.pad_id)
            logits = self.model(batch["input_ids"].to(self.device),
                                batch["attention_mask"].to(self.device))
            out[idx] = logits.float().softmax(-1).cpu()
        return out


class ImagePredictor(_Predictor):
    def __init__(self, ckpt_dir: Path, device: str = "cpu", dtype: torch.dtype | None = None):
        self.net, pre, self.meta = load_vision(ckpt_dir, device)
        self.transform, self.labels = pre.eval_transform(), self.meta["labels"]
        self.device, self.dtype = device, dtype

    def probabilities(self, images: list) -> torch.Tensor:
        pixels = torch.stack([self.transform(img) for img in images]).to(self.device)
        return self.net(pixels).float().softmax(-1)


def load_predictor(ckpt_dir: Path, device: str = "cpu",
                   dtype: torch.dtype | None = None) -> _Predictor:
    task = json.loads((Path(ckpt_dir) / "adapt.json").read_text())["task"]
    cls = ImagePredictor if task == "image-classification" else Predictor
    return cls(ckpt_dir, device, dtype)


class ModelCache:
    """At most `size` predictors and `max_bytes` of weights (the newest always stays); concurrent
    first requests for one model load it once. on_lookup(hit) observes every get()."""

    def __init__(self, size: int, max_bytes: int = 0, load: Callable[[Path], _Predictor] = load_predictor,
                 on_lookup: Callable[[bool], None] | None = None):
        self.size, self.max_bytes, self._load, self._on_lookup = size, max_bytes, load, on_lookup
        self._items: OrderedDict[str, tuple[_Predictor, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, path: Path) -> _Predictor:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._hit(True, self._items[key][0])
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._items:
                    return self._hit(True, self._items[key][0])
            predictor = self._load(path)
            with self._lock:
                self._items[key] = (predictor, predictor.nbytes())
                self._loading.pop(key, None)
                self._evict()
            return self._hit(False, predictor)

    def _hit(self, hit: bool, predictor: _Predictor) -> _Predictor:
        if self._on_lookup is not None:
            self._on_lookup(hit)
        return predictor

    def _evict(self) -> None:
        while len(self._items) > 1 and (
                len(self._items) > self.size
                or (self.max_bytes and sum(n for _, n in self._items.values()) > self.max_bytes)):
            _, (old, _) = self._items.popitem(last=False)
            old.close()

    def drop(self, key: str) -> None:
        with self._lock:
            item = self._items.pop(key, None)
        if item is not None:
            item[0].close()

    def __len__(self) -> int:
        return len(self._items)

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


def model_cache() -> ModelCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            settings = get_settings()
            _cache = ModelCache(settings.model_cache_size, settings.model_cache_bytes,
                                load=_load_for_serving, on_lookup=_observe_lookup)
        return _cache


def close_model_cache() -> None:
    """Unload every model; the next model_cache() starts an empty one."""
    global _cache
    with _cache_lock:
        cache, _cache = _cache, None
    if cache is not None:
        cache.clear()


def _observe_lookup(hit: bool) -> None:
    record_model_cache(hit)
