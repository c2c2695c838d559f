"""Serving, side by side in one run (issue 13): the service's predict and GET /v1/jobs/{id}
against the obvious hand-written peers, on the same model, data and machine, interleaved.

    .venv/bin/python benchmarks/serving.py [--duration 10] [--concurrency 32] [--database-url URL]

Needs `wrk` (apt-get install wrk). Steps:
1. The service as the README runs it (`adapt-serve`, embedded default, API + worker) trains a
   MiniLM `head` model on Rotten Tomatoes; its checkpoint is downloaded.
2. The peer: FastAPI + uvicorn, the same checkpoint loaded once, one forward pass per request in
   a plain `def` endpoint (what one writes by hand).
3. Quiet: each answers one held-out review per request at concurrency 1 (a sequential keep-alive
   client: p50/p99) and at --concurrency (wrk); the ceiling is the raw model's forward pass on
   batches of --concurrency reviews in this process, no HTTP.
4. Loaded: a `full` fine-tune runs on the service's worker (the embedded default's worker shares
   the cores with its API) while both are measured again, the peer too (the same job competes).
   The worker pauses between steps while the service's model server holds requests (at most
   ADAPT_WORKER_YIELD_MAX_PAUSE_S per step), not for the peer's: the training steps it made
   during each measurement are printed beside it, and so are the CPU seconds each process
   (worker, model server, API, peer) used meanwhile.
5. Control plane: benchmarks/control_plane.py's GET /v1/jobs/{id} against its FastAPI + ORM peer
   (a fresh database next to --database-url, default PostgreSQL on loopback when it answers,
   else the row is skipped).
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import ROOT, call, serve  # noqa: E402
from predict_batching import ceiling, reviews, sequential, trained_head_model, wrk  # noqa: E402

PEER = textwrap.dedent("""
    import sys
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from app.ml.modeling import load_exported

    torch.set_num_threads(torch.get_num_threads())
    model, tokenizer, meta = load_exported(sys.argv[1])
    labels = meta["labels"]
    app = FastAPI()

    class Body(BaseModel):
        inputs: list[str]

    @app.post("/predict")
    def predict(body: Body):
        enc = tokenizer(body.inputs, padding=True, truncation=True,
                        max_length=meta.get("max_length", 128), return_tensors="pt")
        with torch.inference_mode():
            probs = model(enc["input_ids"], enc["attention_mask"]).softmax(-1)
        score, idx = probs.max(-1)
        return {"predictions": [{"label": labels[i], "score": s}
                                for s, i in zip(score.tolist(), idx.tolist())]}
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    """The hand-written FastAPI server on the downloaded checkpoint."""

    def __init__(self, ckpt_dir: Path, workdir: Path):
        self.port = free_port()
        script = workdir / "peer_app.py"
        script.write_text(PEER)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"import sys; sys.argv = ['peer', {str(ckpt_dir)!r}]; "
             f"sys.path.insert(0, {str(workdir)!r}); import uvicorn, peer_app; "
             f"uvicorn.run(peer_app.app, host='127.0.0.1', port={self.port}, "
             "log_level='warning', access_log=False)"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/predict"
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("the peer did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


ROLES = (("worker", "workers.celery_app"), ("model server", "app.models_api.model_server"),
         ("API", "app.serve"), ("peer", "peer_app"))


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system, all threads) used so far by each role's processes."""
    tick, out = os.sysconf("SC_CLK_TCK"), {role: 0.0 for role, _ in ROLES}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for role, mark in ROLES:
            if mark in cmd:
                out[role] += (int(fields[11]) + int(fields[12])) / tick
                break
    return out


def measure(urls: dict[str, str], texts: list[str], concurrency: int, seconds: int,
            job_step=None) -> dict:
    """{name: {"c1": ..., "cN": ...}} for each url, interleaved (c1 of each, then cN of each), so
    that a changing background (a training job's phases) falls on both alike. With job_step (the
    training job's progress step), each measurement also says how many steps it trained
    meanwhile: the service's worker pauses for the service's predictions, not for the peer's."""
    out: dict = {name: {} for name in urls}
    for url in urls.values():
        wrk(url, texts[:64], 4, 2)  # warm up (and load the model)
    for c in ("c1", f"c{concurrency}"):
        for name, url in urls.items():
            before, cpu = job_step() if job_step else None, cpu_seconds()
            out[name][c] = (sequential(url, texts, seconds) if c == "c1"
                            else wrk(url, texts, concurrency, seconds))
            out[name][c]["cpu_s"] = {k: round(v - cpu[k], 2) for k, v in cpu_seconds().items()}
            if job_step:
                out[name][c]["job_steps"] = job_step() - before
    return out


def postgres_up(url: str) -> bool:
    try:
        import sqlalchemy as sa

        with sa.create_engine(url).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - absent: the control-plane row is skipped
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--port", type=int, default=8768)
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = p.parse_args()
    texts, _ = reviews(1663)
    data_dir = Path(tempfile.mkdtemp(prefix="adapt-bench-"))
    c = f"c{args.concurrency}"
    results: dict = {}
    with serve(args.port, data_dir) as base:
        ds, job, predictor = trained_head_model(base, data_dir / "local-model", epochs=1)
        url = f"{base}/v1/models/{job['model']}/predict"
        peer = Peer(data_dir / "local-model", data_dir)
        try:
            urls = {"service": url, "peer": peer.url}
            results["quiet"] = measure(urls, texts, args.concurrency, args.duration)
            results["ceiling_inputs_per_s"] = ceiling(predictor, texts, args.concurrency,
                                                      args.duration)
            busy = call(base, "/v1/jobs", {
                "base_model": "minilm-l6-v2", "training_dataset": ds["id"], "method": "full",
                "hyperparameters": {"epochs": 20, "batch_size": 16}})
            try:
                while not ((call(base, f"/v1/jobs/{busy['id']}").get("progress") or {})
                           .get("step")):  # past the job's start-up: training steps run
                    time.sleep(1)
                results["training"] = measure(
                    urls, texts, args.concurrency, args.duration, job_step=lambda: (call(
                        base, f"/v1/jobs/{busy['id']}").get("progress") or {}).get("step", 0))
                results["training"]["job_progress_after"] = call(
                    base, f"/v1/jobs/{busy['id']}")["progress"]
            finally:
                call(base, f"/v1/jobs/{busy['id']}/cancel", {})
        finally:
            peer.stop()
    if postgres_up(args.database_url):
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "control_plane.py"),
                              "--duration", str(args.duration), "--connections",
                              str(args.concurrency), "--database-url", args.database_url],
                             capture_output=True, text=True, cwd=ROOT)
        at = out.stdout.find('{\n  "adapt"')
        results["control_plane"] = (json.JSONDecoder().raw_decode(out.stdout[at:])[0]
                                    if out.returncode == 0 and at >= 0
                                    else {"error": (out.stdout + out.stderr)[-2000:]})
    print(json.dumps(results, indent=2))

    q, t, ceil = results["quiet"], results["training"], results["ceiling_inputs_per_s"]
    rows = [
        (f"predict, concurrency {args.concurrency}, quiet: req/s (p99 ms)",
         f"{q['service'][c]['req_per_s']:.0f} ({q['service'][c]['p99_ms']:.0f})",
         f"{q['peer'][c]['req_per_s']:.0f} ({q['peer'][c]['p99_ms']:.0f})",
         f"≥ 0.8 × raw batched forward ({ceil:.0f}/s): "
         f"{q['service'][c]['req_per_s'] / ceil:.2f}×"),
        (f"predict, concurrency {args.concurrency}, a job training: req/s (p50 ms)",
         f"{t['service'][c]['req_per_s']:.0f} ({t['service'][c]['p50_ms']:.0f})",
         f"{t['peer'][c]['req_per_s']:.0f} ({t['peer'][c]['p50_ms']:.0f})",
         "degrade no worse than the peer: service kept "
         f"{t['service'][c]['req_per_s'] / q['service'][c]['req_per_s']:.0%}, peer "
         f"{t['peer'][c]['req_per_s'] / q['peer'][c]['req_per_s']:.0%}"),
        ("predict, concurrency 1, a job training: req/s (p50 ms)",
         f"{t['service']['c1']['req_per_s']:.1f} ({t['service']['c1']['p50_ms']:.0f})",
         f"{t['peer']['c1']['req_per_s']:.1f} ({t['peer']['c1']['p50_ms']:.0f})",
         f"service kept {t['service']['c1']['req_per_s'] / q['service']['c1']['req_per_s']:.0%}"
         f", peer {t['peer']['c1']['req_per_s'] / q['peer']['c1']['req_per_s']:.0%}"),
        (f"training steps of the job meanwhile (c1 / c{args.concurrency}, "
         f"{args.duration} s each)",
         f"{t['service']['c1']['job_steps']} / {t['service'][c]['job_steps']}",
         f"{t['peer']['c1']['job_steps']} / {t['peer'][c]['job_steps']}", ""),
        (f"CPU seconds of the training worker meanwhile (c1 / c{args.concurrency})",
         f"{t['service']['c1']['cpu_s']['worker']} / {t['service'][c]['cpu_s']['worker']}",
         f"{t['peer']['c1']['cpu_s']['worker']} / {t['peer'][c]['cpu_s']['worker']}", ""),
        ("predict, concurrency 1, quiet: p50 / p99 ms",
         f"{q['service']['c1']['p50_ms']:.1f} / {q['service']['c1']['p99_ms']:.1f}",
         f"{q['peer']['c1']['p50_ms']:.1f} / {q['peer']['c1']['p99_ms']:.1f}",
         f"p99 ≤ 2 × p50: {q['service']['c1']['p99_ms'] / q['service']['c1']['p50_ms']:.1f}×"),
    ]
    cp = results.get("control_plane")
    if cp and "error" not in cp:
        rows.append((f"GET /v1/jobs/{{id}}, concurrency {cp['connections']}, PostgreSQL: "
                     "req/s (p99 ms)",
                     f"{cp['adapt']['req_per_s']:.0f} ({cp['adapt']['p99_ms']:.0f})",
                     f"{cp['peer']['req_per_s']:.0f} ({cp['peer']['p99_ms']:.0f})",
                     f"≥ 2.5 × the peer, p99 < 50 ms: "
                     f"{cp['adapt']['req_per_s'] / cp['peer']['req_per_s']:.2f}×"))
    print("\n| measure | this service | peer | goal: measured |\n|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    errors = {f"{k}/{who}/{c}": v[who][c]["errors"] for k, v in (("quiet", q), ("training", t))
              for who in ("service", "peer") if v[who][c]["errors"]}
    print(f"\nerrors (non-2xx or socket) at concurrency {args.concurrency}: {errors or 'none'}")


if __name__ == "__main__":
    main()
