"""Frozen-backbone features for the quality checks: text through the base model's encoder (the
same pooled features a `head` job computes, read from and added to the shared FeatureCache, so
a later `head` job on the dataset starts warm), images through the ImageNet network without its
classifier (its penultimate layer)."""
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from app.ml import data as D
from app.ml import modeling, vision
from app.ml.feature_cache import FeatureCache, example_key
from app.ml.precision import autocast, train_autocast_dtype

BATCH = 64


def token_ids(model_dir: Path, texts: list[str], max_length: int | None) -> list[list[int]]:
    """Each text's token ids (truncated at max_length as a job would; None: untruncated)."""
    tokenizer = modeling.load_tokenizer(model_dir)
    if max_length is None:
        return tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


@torch.no_grad()
def text_features(model_dir: Path, ids: list[list[int]], *, device: str = "cpu",
                  precision: str = "auto", cache: FeatureCache | None = None,
                  namespace: str = "") -> np.ndarray:
    """(n, d) float32 pooled features of token-id lists (truncated as a job truncates them)."""
    keys = [example_key(x) for x in ids]
    table = cache.load(namespace) if cache else {}
    todo = sorted({k: i for i, k in enumerate(keys) if k not in table}.items(),
                  key=lambda item: len(ids[item[1]]))
    if todo:
        model = modeling.build_classifier(model_dir, ["a", "b"], "head", {"dropout": 0.0})
        model.to(device).eval()
        pad = modeling.load_tokenizer(model_dir).pad_token_id or 0
        fresh = {}
        for b in range(0, len(todo), BATCH):
            chunk = todo[b:b + BATCH]
            inputs = D.collate([ids[i] for _, i in chunk], pad)
            with autocast(device, train_autocast_dtype(device, precision)):
                feats = model.features(**{k: v.to(device) for k, v in inputs.items()})
            fresh.update((k, f.float().cpu()) for (k, _), f in zip(chunk, feats, strict=True))
        table = {**table, **fresh}
        if cache:
            cache.store(namespace, table)
    return torch.stack([table[k] for k in keys]).numpy().astype(np.float32)


def image_key(data: bytes, size: int) -> str:
    return hashlib.sha256(data).hexdigest()[:32] + f"@{size}"


@torch.no_grad()
def image_features(arch: str, weights: Path | None, images_zip: Path, members: list[str], *,
                   image_size: int = 224, device: str = "cpu",
                   cache: FeatureCache | None = None, namespace: str = "") -> np.ndarray:
    """(n, d) float32 penultimate-layer features of archive members, evaluated as a job's
    validation images are (resize, centre crop, ImageNet normalisation)."""
    with zipfile.ZipFile(images_zip) as zf:
        keys = [image_key(zf.read(m), image_size) for m in members]
        table = cache.load(namespace) if cache else {}
        todo = [i for i, k in enumerate(keys) if k not in table]
        if todo:
            model = vision.VisionClassifier(arch, 2, vision.load_weights(weights) if weights
                                            else None)
            parent, _, last = vision.ARCHITECTURES[arch].head.rpartition(".")
            setattr(model.net.get_submodule(parent), last, torch.nn.Identity())  # penultimate
            model.to(device).eval()
            tf = vision.Preprocess(image_size).eval_transform()
            fresh = {}
            for b in range(0, len(todo), BATCH):
                chunk = todo[b:b + BATCH]
                pixels = torch.stack([tf(vision.decode_image(zf.read(members[i])))
                                      for i in chunk])
                feats = model(pixels.to(device)).float().cpu()
                fresh.update((keys[i], f) for i, f in zip(chunk, feats, strict=True))
            table = {**table, **fresh}
            if cache:
                cache.store(namespace, table)
    return torch.stack([table[k] for k in keys]).numpy().astype(np.float32)
