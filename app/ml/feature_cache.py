"""A content-addressed cache of frozen-encoder features, shared across jobs.

A `head` job's encoder never changes, so each example's pooled features are a function of (base
model + revision, pooling, the example's token ids) alone. They are computed once and kept in one
safetensors file per namespace (the worker makes it tenant + base model revision: a hit must
never tell one tenant what another trained on): later epochs and later jobs on any overlap of the
same data skip the encoder. Writes are atomic (temp file + rename): concurrent jobs never see
a torn file (the last writer's superset wins). The directory is bounded: least recently used
files are evicted past `max_bytes`.
"""
import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def example_key(token_ids: list[int]) -> str:
    return hashlib.sha256(b"".join(i.to_bytes(4, "little") for i in token_ids)).hexdigest()[:32]


class FeatureCache:
    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = Path(root), max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def _file(self, namespace: str) -> Path:
        return self.root / f"{hashlib.sha256(namespace.encode()).hexdigest()[:40]}.safetensors"

    def load(self, namespace: str) -> dict[str, torch.Tensor]:
        """key → feature vector for everything cached under namespace."""
        path = self._file(namespace)
        if not path.is_file():
            return {}
        try:
            blob = load_file(str(path))
        except Exception:  # noqa: BLE001 - a damaged cache file is a miss, never an error
            return {}
        os.utime(path)  # recently used
        keys = bytes(blob["keys"].tolist()).decode().split(",") if blob["keys"].numel() else []
        return dict(zip(keys, blob["features"], strict=True))

    def store(self, namespace: str, items: dict[str, torch.Tensor]) -> None:
        if not items:
            return
        keys = list(items)
        blob = {"keys": torch.tensor(list(",".join(keys).encode()), dtype=torch.uint8),
                "features": torch.stack([items[k] for k in keys]).contiguous()}
        path = self._file(namespace)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(blob, str(tmp))
        os.replace(tmp, path)
        self._evict(keep=path)

    def _evict(self, keep: Path) -> None:
        files = sorted((p for p in self.root.glob("*.safetensors")), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.max_bytes or p == keep:
                continue
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
