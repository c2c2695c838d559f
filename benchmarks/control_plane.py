"""Control plane on PostgreSQL (+ Redis as the broker): `GET /v1/jobs/{id}` and `POST /v1/jobs`
throughput and latency, driven by wrk on loopback for a bounded time.

    .venv/bin/python benchmarks/control_plane.py [--duration 10] [--connections 32] \
        [--api-workers 1] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Creates a fresh database next to the one in --database-url (dropped at the end) and runs
`adapt-serve --no-worker` on it, so created jobs stay queued (their tasks go to Redis db 14,
flushed at the end). Targets on the 2-core machine: GET ≥ 1,500 req/s with p99 < 50 ms;
≥ 300 creates/s.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import call, serve  # noqa: E402
from predict_batching import parse_wrk  # noqa: E402


def admin(url: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


def wrk(url: str, connections: int, seconds: int, body: dict | None = None) -> dict:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    if body is not None:
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = [==[{json.dumps(body)}]==]\n")
        args += ["-s", str(script)]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    p.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--port", type=int, default=8767)
    args = p.parse_args()
    db = f"adapt_bench_{uuid.uuid4().hex[:8]}"
    admin(args.database_url, f"CREATE DATABASE {db}")
    env = {"ADAPT_DATABASE_URL": args.database_url.rsplit("/", 1)[0] + f"/{db}",
           "ADAPT_BROKER_URL": args.broker_url, "ADAPT_AUTH": "off",
           "ADAPT_RATE_LIMIT_JOBS_PER_MINUTE": "0", "ADAPT_RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
           "ADAPT_MAX_ACTIVE_JOBS_PER_TENANT": str(10**9)}
    try:
        with serve(args.port, args=("--no-worker", "--api-workers", str(args.api_workers)),
                   env=env) as base:
            from _service import RT, upload

            ds = upload(base, RT / "train.csv")
            create = {"base_model": "minilm-l6-v2", "training_dataset": ds["id"], "method": "head"}
            job = call(base, "/v1/jobs", create)
            get = wrk(f"{base}/v1/jobs/{job['id']}", args.connections, args.duration)
            post = wrk(f"{base}/v1/jobs", args.connections, args.duration, create)
            total = call(base, "/v1/jobs?limit=1")
    finally:
        admin(args.database_url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        subprocess.run(["redis-cli", "-n", args.broker_url.rsplit("/", 1)[1], "flushdb"],
                       capture_output=True)
    print(json.dumps({"get_job": get, "create_job": post, "api_workers": args.api_workers,
                      "connections": args.connections, "listed": bool(total["data"])}, indent=2))
    print(f"\nGET /v1/jobs/{{id}}: {get['req_per_s']:.0f} req/s (target ≥ 1500 → "
          f"{get['req_per_s'] / 1500:.2f}×), p99 {get['p99_ms']:.1f} ms (target < 50)")
    print(f"POST /v1/jobs: {post['req_per_s']:.0f} creates/s (target ≥ 300 → "
          f"{post['req_per_s'] / 300:.2f}×), p99 {post['p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
