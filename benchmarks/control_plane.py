"""Control plane on PostgreSQL (+ Redis as the broker): `GET /v1/jobs/{id}` of this service side by
side with the obvious peer — a minimal FastAPI + SQLAlchemy ORM app doing one SELECT of the same
row (written below) — at the same concurrency, for a bounded time; optionally `POST /v1/jobs`.

    .venv/bin/python benchmarks/control_plane.py [--duration 10] [--connections 32] \
        [--api-workers 1] [--post] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Creates a fresh database next to the one in --database-url (dropped at the end) and runs
`adapt-serve --no-worker` on it (auth off: loopback), so created jobs stay queued (their tasks go
to Redis db 14, flushed at the end). The job polled is made `running` (the usual polled state: one
row, no queue position). The load generator is an asyncio loop of raw HTTP/1.1 keep-alive
requests in this process: it shares the machine's cores with the servers and PostgreSQL.
Goal on the 2-core machine: ≥ 2.5× the peer's req/s with p99 < 50 ms.
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import ROOT, call, serve  # noqa: E402

PEER = '''
"""The peer: FastAPI + SQLAlchemy ORM, one SELECT of the job row, as a tutorial writes it."""
import os

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import MetaData, Table, create_engine
from sqlalchemy.orm import Session, registry, sessionmaker

engine = create_engine(os.environ["PEER_DATABASE_URL"], pool_size=10, max_overflow=20)
SessionLocal = sessionmaker(engine)
jobs = Table("jobs", MetaData(), autoload_with=engine)


class Job:
    pass


registry().map_imperatively(Job, jobs)
app = FastAPI()


def get_db():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


@app.get("/v1/jobs/{job_id}")
def read_job(job_id: str, db: Session = Depends(get_db)):
    job = db.get(Job, job_id)
    if job is None:
        raise HTTPException(404)
    return {c.key: getattr(job, c.key) for c in jobs.columns}
'''


def admin(url: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


@contextmanager
def peer_server(port: int, database_url: str):
    folder = Path(tempfile.mkdtemp(prefix="adapt-peer-"))
    (folder / "peer_app.py").write_text(PEER)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "peer_app:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log", "--app-dir",
                             str(folder)], env={**os.environ, "PEER_DATABASE_URL": database_url},
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                call(base, "/openapi.json")
                break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


async def _one_connection(port: int, request: bytes, until: float, latencies: list[float],
                          errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (start := time.perf_counter()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            if status >= 400:
                errors.append(status)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def load(base: str, path: str, connections: int, seconds: float, body: dict | None = None,
         warmup: float = 1.0, headers: dict | None = None) -> dict:
    """`connections` keep-alive connections sending one request after another for `seconds`
    (after `warmup` seconds not counted): req/s and latency percentiles."""
    port = int(base.rsplit(":", 1)[1])
    payload = json.dumps(body).encode() if body is not None else b""
    request = ((f"POST {path} HTTP/1.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n") if body is not None
               else f"GET {path} HTTP/1.1\r\n").encode() + b"Host: bench\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode() + b"\r\n" + payload

    async def run(duration: float) -> tuple[list[float], list[int], float]:
        latencies, errors = [], []
        t0 = time.perf_counter()
        await asyncio.gather(*(_one_connection(port, request, t0 + duration, latencies, errors)
                               for _ in range(connections)))
        return latencies, errors, time.perf_counter() - t0

    asyncio.run(run(warmup))
    latencies, errors, elapsed = asyncio.run(run(seconds))
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "errors": len(errors),
            "req_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--post", action="store_true", help="also POST /v1/jobs (creates/s)")
    p.add_argument("--auth", action="store_true",
                   help="API keys on (ADAPT_AUTH=on): every request sends a tenant's key")
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    p.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--port", type=int, default=8767)
    args = p.parse_args()
    db = f"adapt_bench_{uuid.uuid4().hex[:8]}"
    admin(args.database_url, f"CREATE DATABASE {db}")
    db_url = args.database_url.rsplit("/", 1)[0] + f"/{db}"
    env = {"ADAPT_DATABASE_URL": db_url, "ADAPT_BROKER_URL": args.broker_url, "ADAPT_AUTH": "off",
           "ADAPT_RATE_LIMIT_JOBS_PER_MINUTE": "0", "ADAPT_RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
           "ADAPT_MAX_ACTIVE_JOBS_PER_TENANT": str(10**9)}
    post, auth, data_dir = None, {}, Path(tempfile.mkdtemp(prefix="adapt-bench-"))
    env["ADAPT_DATA_DIR"] = str(data_dir)
    try:
        if args.auth:
            env["ADAPT_AUTH"] = "on"
            made = subprocess.run([sys.executable, "-m", "app.admin_cli", "keys", "create",
                                   "--tenant", "bench"], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, **env}, check=True)
            auth = {"Authorization": f"Bearer {json.loads(made.stdout)['key']}"}
        with serve(args.port, data_dir, args=("--no-worker", "--api-workers",
                                              str(args.api_workers)), env=env) as base:
            from _service import RT, multipart

            raw, boundary = multipart(RT / "train.csv")
            ds = call(base, "/v1/datasets", raw=raw, headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}", **auth})
            create = {"base_model": "minilm-l6-v2", "training_dataset": ds["id"], "method": "head"}
            job = call(base, "/v1/jobs", raw=json.dumps(create).encode(),
                       headers={"Content-Type": "application/json", **auth})
            admin(db_url, f"UPDATE jobs SET status = 'running' WHERE id = '{job['id']}'")
            path = f"/v1/jobs/{job['id']}"
            ours = load(base, path, args.connections, args.duration, headers=auth)
            if args.post:
                post = load(base, "/v1/jobs", args.connections, args.duration, create,
                            headers=auth)
        with peer_server(args.port + 1, db_url) as peer_base:
            assert call(peer_base, path)["id"] == job["id"]
            peer = load(peer_base, path, args.connections, args.duration)
    finally:
        admin(args.database_url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(data_dir, ignore_errors=True)
        subprocess.run(["redis-cli", "-n", args.broker_url.rsplit("/", 1)[1], "flushdb"],
                       capture_output=True)
    print(json.dumps({"adapt": ours, "peer": peer, "create_job": post, "auth": args.auth,
                      "api_workers": args.api_workers, "connections": args.connections},
                     indent=2))
    print(f"\nGET /v1/jobs/{{id}}, {args.connections} connections, {args.duration:g} s, "
          f"{args.api_workers} API process(es) vs 1 peer process"
          f"{', adapt with API keys on (the peer has none)' if args.auth else ''}:")
    print(f"{'':8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in (("adapt", ours), ("peer", peer)):
        print(f"{name:8}{r['req_per_s']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
              f"{r['errors']:>8}")
    print(f"ratio adapt/peer: {ours['req_per_s'] / peer['req_per_s']:.2f}× (goal ≥ 2.5×, "
          f"p99 < 50 ms)")
    if post:
        print(f"POST /v1/jobs: {post['req_per_s']:.0f} creates/s, p99 {post['p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
