"""`adapt-serve`: apply migrations, start a Celery worker process (unless told not to) and a model
server per device (kept running), run the API.

On the embedded default this needs nothing else: SQLite, local files, and Celery's SQLAlchemy
transport on a SQLite file as the broker.
"""
import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import uvicorn

from app import worker_pool
from app.config import LOOPBACK, get_settings
from app.migrate import upgrade
from app.models_api import model_server
from app.queue import EXPORT_QUEUE, QUALITY_QUEUE
from app.observability import configure_logging, metrics

log = logging.getLogger("adapt.serve")


def worker_command(queues: list[str] | None = None, loglevel: str = "INFO") -> list[str]:
    """A worker: one solo process per device, taking one task at a time from its queues (by
    default those of this machine's class, as ADAPT_WORKER_DEVICE makes it), from `exports` and
    from `quality` (dataset quality reports)."""
    if queues is None:
        queues = worker_plan("")[0].queues
    queues = list(dict.fromkeys([*queues, EXPORT_QUEUE, QUALITY_QUEUE]))
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
            "--concurrency=1", "-Q", ",".join(queues),
            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--without-heartbeat"]


def worker_plan(gpus: str | None) -> list[worker_pool.WorkerSpec]:
    """The worker processes to start: --gpus, else ADAPT_WORKER_GPUS (app.worker_pool.plan)."""
    settings = get_settings()
    try:
        return worker_pool.plan(worker_pool.visible_gpus(),
                                settings.worker_gpus if gpus is None else gpus,
                                settings.gpus_per_worker, settings.worker_device)
    except ValueError as exc:
        raise SystemExit(f"--gpus: {exc}") from None


def start_model_servers(wait_s: float = 60.0) -> list[worker_pool.Kept]:
    """One model server per device, kept running, each on its socket under the data dir; the
    API processes (this one and uvicorn's workers) find them in ADAPT_MODEL_SERVER. Waits until
    their sockets are there (a restart later is a 503 to the requests it meets, whose Retry-After
    says when the server starts again: a server that keeps crashing is started less often)."""
    settings = get_settings()
    planned = model_server.plan(settings.data_dir, worker_pool.visible_gpus(),
                                settings.worker_device)
    for path, _ in planned:
        path.unlink(missing_ok=True)  # left by a server that was killed: not ready yet
    servers = [worker_pool.Kept(worker_pool.WorkerSpec("model-server", 0, env),
                                model_server.command(path), name="model server",
                                down_file=model_server.down_file(path))
               for path, env in planned]
    settings.model_server = os.environ["ADAPT_MODEL_SERVER"] = \
        ",".join(str(path) for path, _ in planned)
    deadline = time.monotonic() + wait_s
    while not all(Path(p).exists() for p, _ in planned) and time.monotonic() < deadline:
        time.sleep(0.1)
    log.info("model servers: %s", settings.model_server)
    return servers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="adapt-serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-worker", action="store_true", help="run the API only")
    parser.add_argument("--worker-only", action="store_true", help="run a worker only")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="API processes: they share the model servers, which hold the "
                             "loaded models and batch predict requests across all of them; "
                             "/metrics adds up their counts; rate limits are shared with a "
                             "Redis broker")
    parser.add_argument("--predict-in-process", action="store_true",
                        help="no model server: each API process loads its own models and runs "
                             "predict itself (ignored when ADAPT_MODEL_SERVER is set)")
    parser.add_argument("--gpus", default=None, metavar="all|N",
                        help="worker processes: one per visible GPU (all) or per GPU of the "
                             "first N, each pinned with CUDA_VISIBLE_DEVICES and consuming the "
                             "gpu queues; one CPU worker when no GPU is visible "
                             "(default: ADAPT_WORKER_GPUS, else one worker)")
    args = parser.parse_args(argv)
    configure_logging()

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    log.info("database %s is at the newest migration", settings.resolved_database_url)
    specs = [] if args.no_worker else worker_plan(args.gpus)
    if args.worker_only:
        if len(specs) == 1:  # the worker itself, in this process (PID 1 in a container)
            os.environ.update(specs[0].env)
            os.execv(sys.executable, worker_command(specs[0].queues))
        raise SystemExit(worker_pool.supervise(specs, lambda spec: worker_command(spec.queues)))
    if specs and not settings.worker_classes:
        # The workers started below are known to exist before their first heartbeat: a job for
        # them is accepted at once, one no worker here could take is refused (422).
        settings.worker_classes = os.environ["ADAPT_WORKER_CLASSES"] = \
            worker_pool.classes_of(specs)
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
    # A CPU worker here shares the cores with the API and the model server: it runs nicer, so
    # that a training job takes the CPU time that predictions and polls leave, and it pauses
    # between steps while the model server on the CPU holds requests (YieldToPredictions).
    if not (settings.model_server or args.predict_in_process):
        planned = model_server.plan(settings.data_dir, worker_pool.visible_gpus(),
                                    settings.worker_device)
        if len(planned) == 1 and planned[0][1]["ADAPT_WORKER_DEVICE"] == "cpu":
            settings.predict_activity_file = os.environ["ADAPT_PREDICT_ACTIVITY_FILE"] = \
                str(model_server.activity_file(planned[0][0]))
    # Its OpenMP threads also sleep at once when they wait (OMP_WAIT_POLICY=PASSIVE, unless set):
    # spinning ones, each time a predict preempts one of them, burn the cores the predictions
    # need (measured: 6.9 CPU-seconds of 20 for 3 training steps during a 10-second burst).
    omp = {} if "OMP_WAIT_POLICY" in os.environ else {"OMP_WAIT_POLICY": "PASSIVE"}
    workers = [worker_pool.start(replace(spec, env={**omp, **spec.env}) if spec.device == "cpu"
                                 else spec, worker_command(spec.queues),
                                 nice=settings.worker_nice if spec.device == "cpu" else 0)
               for spec in specs]
    servers = [] if settings.model_server or args.predict_in_process else start_model_servers()
    if args.api_workers > 1:  # /metrics adds up what every API process counted
        metrics.prepare_multiprocess(settings.data_dir / "prometheus")
    try:
        # log_config=None: uvicorn's loggers go through ours (ADAPT_LOG_FORMAT); the access log
        # is the request middleware's (with request ids), not uvicorn's.
        # A worker that takes longer than uvicorn's default 5 s to import the app (torch, on a
        # busy machine) would be killed and restarted forever.
        uvicorn.run("app.main:app", host=args.host, port=args.port, log_level="info",
                    log_config=None, access_log=False, workers=args.api_workers,
                    timeout_worker_healthcheck=60)
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:  # each checkpoints its running job first
            try:
                worker.wait(timeout=settings.shutdown_checkpoint_s + 10)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
