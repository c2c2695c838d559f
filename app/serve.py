"""`adapt-serve`: apply migrations, start a Celery worker process (unless told not to), run the API.

On the embedded default this needs nothing else: SQLite, local files, and Celery's SQLAlchemy
transport on a SQLite file as the broker.
"""
import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys

import uvicorn

from app.config import LOOPBACK, get_settings
from app.migrate import upgrade
from app.observability import configure_logging

log = logging.getLogger("adapt.serve")


def worker_command(loglevel: str = "INFO") -> list[str]:
    """The worker: one solo process per device, taking one task at a time from the queue."""
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
            "--concurrency=1", "-Q", "training", f"--loglevel={loglevel}", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]


def _die_with_parent() -> None:
    """In the worker child: get SIGTERM when adapt-serve dies, however it dies (uvicorn re-raises
    the signal that stopped it, which ends this process before any `finally` could run)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="adapt-serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-worker", action="store_true", help="run the API only")
    parser.add_argument("--worker-only", action="store_true", help="run a worker only")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="API processes (each keeps its own model cache and rate limits)")
    args = parser.parse_args(argv)
    configure_logging()

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    log.info("database %s is at the newest migration", settings.resolved_database_url)
    if args.worker_only:
        os.execv(sys.executable, worker_command())
    settings.bind_host = args.host
    if settings.auth == "off" and args.host not in LOOPBACK:
        raise SystemExit(f"refusing to listen on {args.host} with ADAPT_AUTH=off: without keys "
                         "the service may only bind a loopback address")
    if settings.auth_enabled:
        log.info("API keys required (create one: adapt-admin keys create --tenant NAME)")
    else:
        log.info("auth is off: single-user mode, bound to %s only", args.host)
    # The worker started below reads the same bind host, so it agrees with the API on whether
    # this is single-user mode (e.g. for ADAPT_WEBHOOK_ALLOW_PRIVATE).
    os.environ["ADAPT_BIND_HOST"] = args.host
    worker = None if args.no_worker else subprocess.Popen(worker_command(),
                                                          preexec_fn=_die_with_parent)
    try:
        # log_config=None: uvicorn's loggers go through ours (ADAPT_LOG_FORMAT); the access log
        # is the request middleware's (with request ids), not uvicorn's.
        uvicorn.run("app.main:app", host=args.host, port=args.port, log_level="info",
                    log_config=None, access_log=False, workers=args.api_workers)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
