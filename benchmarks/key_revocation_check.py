"""What the revocation check costs a keyed request on PostgreSQL without Redis, against the key
verification the key cache spares:

- **generation read**: `revocations.current()`, one primary-key SELECT of a one-row table on the
  autocommit connection the process holds for it (what every keyed request now does on the
  event loop); beside it the same SELECT through a pool checkout and SQLAlchemy Core (the read
  engine), which it replaced;
- **cached request**: `verify_cached` with a cached key (the generation read + a dict lookup);
- **uncached verification**: `verify_cached` with `ADAPT_KEY_CACHE_S=0` (the thread-pool hop, a
  session, the SELECT by prefix, the hash compare, COMMIT): what every request did without the
  cache.

    .venv/bin/python benchmarks/key_revocation_check.py [--rounds 5] [--n 2000] \\
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Creates a fresh database next to the one in --database-url (dropped at the end); no Redis (the
broker is the embedded one in a temporary data dir), so the generation lives in the database.
Prints microseconds per call, wall and CPU (the CPU of this process: what the event loop and
the thread pool spend), each the median of the rounds.
"""
import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def per_call_us(fn, n: int, rounds: int) -> tuple[float, float]:
    """(wall, CPU) microseconds per call of fn(), each the median of the rounds."""
    async def as_coroutine():
        fn()

    return per_call_us_async(as_coroutine, n, rounds)


def per_call_us_async(coro_fn, n: int, rounds: int) -> tuple[float, float]:
    """(wall, CPU of this process: the event loop and the thread pool) microseconds per awaited
    coro_fn(), each the median of the rounds."""
    async def loop() -> tuple[float, float]:
        await coro_fn()  # warm: connections, compiled statements
        wall, cpu = [], []
        for _ in range(rounds):
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                await coro_fn()
            wall.append((time.perf_counter() - start) / n * 1e6)
            cpu.append((time.process_time() - start_cpu) / n * 1e6)
        return statistics.median(wall), statistics.median(cpu)

    return asyncio.run(loop())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url",
                    default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import sqlalchemy as sa

    name = f"adapt_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    data_dir = Path(tempfile.mkdtemp(prefix="adapt-bench-"))
    os.environ.update({"ADAPT_DATABASE_URL": args.database_url.rsplit("/", 1)[0] + f"/{name}",
                       "ADAPT_DATA_DIR": str(data_dir), "ADAPT_BROKER_URL": "",
                       "ADAPT_LOG_FORMAT": "text"})
    try:
        from app.config import get_settings
        from app.db import dispose_engine, read_only, session_scope
        from app.keys import service as keys
        from app.keys.auth import KeyCache, verify_cached
        from app.migrate import upgrade
        from app.shared_state import Generation

        upgrade(get_settings().resolved_database_url)
        assert keys.revocations.in_database(), "the generation should live in the database"
        with session_scope() as s:
            _, token = keys.create(s, "bench", "bench")
            revoked, _ = keys.create(s, "bench", "revoked")
        with session_scope() as s:
            keys.revoke(s, revoked.id)  # a generation row to read, as after any revocation
        cache = KeyCache()
        file = data_dir / ".generation-for-comparison"
        file.write_text(uuid.uuid4().hex)

        read = per_call_us(keys.revocations.current, args.n, args.rounds)
        core_select = sa.text(Generation.SELECT.replace("%s", ":n"))
        core = per_call_us(lambda: read_only(lambda c: c.execute(core_select, {"n": "x"})
                                             .scalar()), args.n, args.rounds)
        file_read = per_call_us(file.read_text, args.n, args.rounds)
        cached = per_call_us_async(lambda: verify_cached(token, cache, 30), args.n, args.rounds)
        uncached = per_call_us_async(lambda: verify_cached(token, KeyCache(), 0),
                                     max(args.n // 4, 1), args.rounds)
        for label, us in (("generation read (PK SELECT, held connection)", read),
                          ("the same SELECT through the pool and Core", core),
                          ("file generation read (the SQLite default)", file_read),
                          ("cached request (generation read + cache hit)", cached),
                          ("uncached verification (ADAPT_KEY_CACHE_S=0)", uncached)):
            print(f"{label:<46} wall {us[0]:8.1f} µs/call   CPU {us[1]:8.1f} µs/call")
        print(f"uncached / cached: wall {uncached[0] / cached[0]:.1f}×, "
              f"CPU {uncached[1] / cached[1]:.1f}×")
        dispose_engine()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
