"""Fine-tuned models kept loaded in the API process: an LRU cache that loads each model once."""
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from app.ml.modeling import load_exported


def _top(probs: torch.Tensor, labels: list[str], top_k: int) -> list[dict]:
    scores, idx = probs.topk(min(top_k, len(labels)), dim=-1)
    out = []
    for row_s, row_i in zip(scores.tolist(), idx.tolist(), strict=True):
        top = [{"label": labels[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
        out.append({"label": top[0]["label"], "score": top[0]["score"], "top": top})
    return out


class ImagePredictor:
    def __init__(self, ckpt_dir: Path, device: str = "cpu"):
        from app.ml.vision import load_exported

        self.net, pre, self.meta = load_exported(ckpt_dir, device)
        self.transform, self.labels, self.device = pre.eval_transform(), self.meta["labels"], device

    @torch.inference_mode()
    def predict(self, images: list, top_k: int) -> list[dict]:
        pixels = torch.stack([self.transform(img) for img in images]).to(self.device)
        return _top(self.net(pixels).float().softmax(-1), self.labels, top_k)


def load_predictor(ckpt_dir: Path):
    import json

    task = json.loads((Path(ckpt_dir) / "adapt.json").read_text())["task"]
    return ImagePredictor(ckpt_dir) if task == "image-classification" else Predictor(ckpt_dir)


class Predictor:
    def __init__(self, ckpt_dir: Path, device: str = "cpu"):
        self.model, self.tokenizer, self.meta = load_exported(ckpt_dir, device)
        self.labels: list[str] = self.meta["labels"]
        self.max_length: int = self.meta.get("max_length", 128)
        self.device = device

    @torch.inference_mode()
    def predict(self, texts: list[str], top_k: int) -> list[dict]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        logits = self.model(batch["input_ids"].to(self.device),
                            batch["attention_mask"].to(self.device))
        return _top(logits.float().softmax(-1), self.labels, top_k)


class ModelCache:
    """At most `size` predictors; concurrent first requests for one model load it once."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, key: str, path: Path) -> Predictor:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            predictor = load_predictor(path)
            with self._lock:
                self._items[key] = predictor
                self._loading.pop(key, None)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return predictor

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


_cache: ModelCache | None = None


def model_cache() -> ModelCache:
    global _cache
    if _cache is None:
        from app.config import get_settings

        _cache = ModelCache(get_settings().model_cache_size)
    return _cache
