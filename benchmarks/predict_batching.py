"""Batched inference: predict throughput and latency through the API with micro-batching on vs
each request handled alone, against the raw model's batched forward pass (the ceiling) — all
measured in the same run, on the same fine-tuned MiniLM and the same short texts.

    .venv/bin/python benchmarks/predict_batching.py [--duration 10] [--concurrency 32]

Needs `wrk` (apt-get install wrk) as the load generator at --concurrency: it is C, so it takes
little of the CPU the server needs. Concurrency 1 is timed by a sequential keep-alive client here. Steps: train a MiniLM `head` model through the service (Rotten Tomatoes, one
epoch); serve it twice on one data directory — micro-batching on (the defaults) and off
(ADAPT_PREDICT_MAX_BATCH=1: every request its own forward pass); drive each with one review per
request at concurrency 1 and at --concurrency. The ceiling is the raw model's forward pass in
this process on batches of --concurrency reviews (padded to each batch's longest), with no HTTP.
Also prints how often bf16 autocast agrees with float32 on the held-out reviews (the accuracy
check for reduced precision; "auto" picks bf16 only where the hardware has it).
"""
import argparse
import csv
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import RT, ROOT, run_job, serve, upload  # noqa: E402

sys.path.insert(0, str(ROOT))


def reviews(n: int) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(open(RT / "heldout.csv", encoding="utf-8")))[:n]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def wrk(url: str, texts: list[str], connections: int, seconds: int) -> dict:
    """Requests/s and latency percentiles (ms) of POSTing one text per request."""
    bodies = ",\n".join(f"[==[{json.dumps({'inputs': [t]})}]==]" for t in texts)
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{{bodies}}}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
""")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict:
    """Requests/s, latency percentiles (ms) and error counts from wrk --latency output."""
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    pct = {p: float(v) * unit[u] for p, v, u in re.findall(r"\s(50|90|99)%\s+([\d.]+)(us|ms|s)\b", out)}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": pct["50"], "p90_ms": pct["90"], "p99_ms": pct["99"],
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": (int(non2xx.group(1)) if non2xx else 0)
            + (sum(map(int, sock.groups())) if sock else 0)}


def sequential(url: str, texts: list[str], seconds: float) -> dict:
    """One request at a time from one keep-alive connection, timed here: the latency of an idle
    server (wrk's percentiles for POST bodies at one connection came out inconsistent with its
    own request count and the server's access log, so they are not used for concurrency 1)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    lat, t_end, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < t_end:
        body = json.dumps({"inputs": [texts[i % len(texts)]]})
        t0 = time.perf_counter()
        conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
        res = conn.getresponse()
        res.read()
        if res.status != 200:
            raise SystemExit(f"predict answered {res.status}")
        lat.append((time.perf_counter() - t0) * 1000)
        i += 1
    lat.sort()
    return {"req_per_s": len(lat) / seconds, "p50_ms": lat[len(lat) // 2],
            "p90_ms": lat[int(len(lat) * 0.9)], "p99_ms": lat[int(len(lat) * 0.99)],
            "requests": len(lat), "errors": 0}


def model_from(base: str, model_id: str, into: Path):
    """Download the model's checkpoint and load it the way the API does."""
    import urllib.request

    from _service import call
    from app.models_api.inference import load_predictor

    ckpt = call(base, f"/v1/models/{model_id}")["checkpoint"]
    with urllib.request.urlopen(f"{base}/v1/checkpoints/{ckpt}/content") as res:
        zipfile.ZipFile(io.BytesIO(res.read())).extractall(into)
    return load_predictor(into)


def trained_head_model(base: str, into: Path, epochs: int):
    """(dataset, job, predictor): a MiniLM `head` model trained through the service on Rotten
    Tomatoes, its checkpoint downloaded into `into` and loaded the way the API does."""
    ds = upload(base, RT / "train.csv")
    job = run_job(base, {"base_model": "minilm-l6-v2", "training_dataset": ds["id"],
                         "method": "head", "hyperparameters": {
                             "epochs": epochs, "batch_size": 32, "learning_rate": 2e-3}})
    return ds, job, model_from(base, job["model"], into)


def ceiling(predictor, texts: list[str], batch: int, seconds: float) -> float:
    """Inputs/s of the raw model's forward pass on batches of `batch` texts (tokenised and
    padded to the batch's longest, as a hand-written batch loop would), no HTTP."""
    import torch

    def forward(chunk):
        enc = predictor.tokenizer(chunk, padding=True, truncation=True,
                                  max_length=predictor.max_length, return_tensors="pt")
        with torch.inference_mode():
            predictor.model(enc["input_ids"], enc["attention_mask"]).softmax(-1)

    forward(texts[:batch])  # warm-up
    done, t0, i = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        forward([texts[(i + j) % len(texts)] for j in range(batch)])
        done, i = done + batch, i + batch
    return done / (time.perf_counter() - t0)


def bf16_agreement(predictor, texts: list[str], labels: list[str]) -> dict:
    import torch

    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        predictor.dtype = dtype
        preds = [p["label"] for i in range(0, len(texts), 64)
                 for p in predictor.run_batch(texts[i:i + 64], [1] * len(texts[i:i + 64]))]
        out[name] = preds
    predictor.dtype = None
    same = sum(a == b for a, b in zip(out["fp32"], out["bf16"], strict=True)) / len(texts)
    acc = {k: sum(p == t for p, t in zip(v, labels, strict=True)) / len(texts) for k, v in out.items()}
    return {"agreement": same, "accuracy_fp32": acc["fp32"], "accuracy_bf16": acc["bf16"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--port", type=int, default=8766)
    args = p.parse_args()
    texts, labels = reviews(1663)
    data_dir = Path(tempfile.mkdtemp(prefix="adapt-bench-"))
    with serve(args.port, data_dir) as base:
        _, job, predictor = trained_head_model(base, data_dir / "local-model", epochs=2)
    results = {}
    for mode, env in (("batched", {}), ("alone", {"ADAPT_PREDICT_MAX_BATCH": "1"})):
        with serve(args.port, data_dir, args=("--no-worker",), env=env) as base:
            url = f"{base}/v1/models/{job['model']}/predict"
            wrk(url, texts[:64], 4, 2)  # load the model, warm up
            results[mode] = {"c1": sequential(url, texts, args.duration),
                             f"c{args.concurrency}": wrk(url, texts, args.concurrency, args.duration)}
    import torch

    results["ceiling_inputs_per_s"] = ceiling(predictor, texts, args.concurrency, args.duration)
    results["bf16_check"] = bf16_agreement(predictor, texts, labels)
    results["torch_threads"] = torch.get_num_threads()
    print(json.dumps(results, indent=2))
    c = f"c{args.concurrency}"
    b, a, ceil = results["batched"], results["alone"], results["ceiling_inputs_per_s"]
    print(f"\nconcurrency {args.concurrency}: batched {b[c]['req_per_s']:.0f} req/s vs alone "
          f"{a[c]['req_per_s']:.0f} req/s → {b[c]['req_per_s'] / a[c]['req_per_s']:.2f}× "
          f"(target ≥ 3×); {b[c]['req_per_s'] / ceil:.0%} of the raw batched forward pass "
          f"({ceil:.0f} inputs/s; target ≥ 80%); mean latency {args.concurrency / b[c]['req_per_s'] * 1000:.0f} ms "
          f"vs {args.concurrency / a[c]['req_per_s'] * 1000:.0f} ms")
    print(f"concurrency 1: p50 batched {b['c1']['p50_ms']:.2f} ms vs alone {a['c1']['p50_ms']:.2f} "
          f"ms → +{b['c1']['p50_ms'] - a['c1']['p50_ms']:.2f} ms (target ≤ 1 ms)")
    chk = results["bf16_check"]
    print(f"bf16 autocast vs float32: {chk['agreement']:.1%} same labels; held-out accuracy "
          f"{chk['accuracy_bf16']:.3f} vs {chk['accuracy_fp32']:.3f}")


if __name__ == "__main__":
    main()
