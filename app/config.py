"""One Settings object: every knob is an ADAPT_* environment variable with a unit and a default."""
from functools import lru_cache
from pathlib import Path

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAPT_", env_file=".env", extra="ignore")

    # Where datasets, checkpoints and the embedded SQLite files live.
    data_dir: Path = Path("./data")
    # SQLAlchemy URL. Empty → SQLite file in data_dir. PostgreSQL: postgresql+psycopg://user@host/db
    database_url: str = ""
    # Celery broker URL. Empty → the embedded SQLAlchemy transport on a SQLite file in data_dir.
    broker_url: str = ""
    # Worker device: "auto" picks CUDA when present, else CPU. Or "cpu", "cuda", "cuda:1".
    worker_device: str = "auto"
    # Extra base models: a list of local model directories (transformers layout), separated by ":".
    model_dirs: str = ""
    # Where torchvision ImageNet weight files (resnet18-f37072fd.pth, …) are looked for, ":"-
    # separated, before the torch cache (~/.cache/torch/hub/checkpoints).
    vision_weights_dir: str = ""
    # Frozen-encoder features shared across `head` jobs: most bytes kept (LRU beyond), 0 = off.
    feature_cache_bytes: int = 2 << 30
    # Whether hub ids (e.g. "sentence-transformers/all-MiniLM-L6-v2") may be fetched at run time.
    allow_hub: bool = False

    # Uploads: largest accepted file, bytes.
    max_upload_bytes: int = 1 << 30
    # Datasets: most rows, longest text (characters), most distinct labels.
    max_rows: int = 1_000_000
    max_text_chars: int = 100_000
    max_labels: int = 1_000
    # Longest label (characters, after Unicode normalisation).
    max_label_chars: int = Field(default=100, ge=1)
    # Image ZIPs: the most bytes they may expand to (checked before anything is decompressed).
    max_unzipped_bytes: int = 8 << 30
    # Predict: most inputs in one request.
    max_predict_inputs: int = 256
    # Images (dataset ZIP members and predict inputs): most pixels in one image, checked from its
    # header before it is decoded (40 MP is the ceiling whatever this says); and most pixels in
    # all the images of one predict request together.
    max_image_pixels: int = Field(default=25_000_000, ge=1)
    max_predict_pixels: int = Field(default=64_000_000, ge=1)
    # Fine-tuned models kept loaded in the API process (LRU): at most this many, and at most this
    # many bytes of weights (the most recently used model always stays).
    model_cache_size: int = Field(default=4, ge=1)
    model_cache_bytes: int = Field(default=4 << 30, ge=0)
    # Predict micro-batching: requests for one model arriving together share a forward pass of at
    # most predict_max_batch inputs; a batch waits at most predict_max_wait_ms for more, and only
    # while other predict requests are on their way (an idle server never waits).
    predict_max_batch: int = Field(default=64, ge=1)
    predict_max_wait_ms: float = Field(default=2.0, ge=0)
    # Precision of forward passes: "auto" = bf16 autocast on GPUs and CPUs (AMX) that compute it
    # natively, float32 elsewhere. Predict may also use fp16 (auto picks it on GPUs without bf16).
    inference_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    train_precision: Literal["auto", "fp32", "bf16"] = "auto"

    # Tenant that owns objects when auth is off (the embedded single-user default).
    default_tenant: str = "default"
    # API keys: "on", "off", or "auto" = on unless the server is bound to a loopback address
    # (adapt-serve records its --host in bind_host; an unknown host counts as exposed).
    auth: Literal["auto", "on", "off"] = "auto"
    bind_host: str = ""
    # Largest JSON (non-upload) request body, bytes.
    max_json_bytes: int = 1 << 20
    # Per-key rate limits on the expensive routes, requests a minute (0 = unlimited).
    rate_limit_uploads_per_minute: int = 30
    rate_limit_jobs_per_minute: int = 60
    rate_limit_predict_per_minute: int = 1200
    # Queued + running jobs one tenant may have at once.
    max_active_jobs_per_tenant: int = 8

    # Worker: seconds between progress writes to the job row (also how often cancel is checked).
    progress_interval_s: float = 1.0
    # Broker visibility timeout, seconds: must exceed the longest job (Redis redelivers after it).
    visibility_timeout_s: int = 24 * 3600
    # Training threads on CPU (0 = torch's default).
    torch_threads: int = 0

    # Reliability. A running job holds a lease that its worker renews every lease_s / 4 seconds;
    # when it lapses (worker killed, machine gone) the job is re-queued and resumed elsewhere: a
    # dead worker's job is picked up within lease_s + reconcile_interval_s (10 s by default).
    lease_s: float = Field(default=8.0, gt=0)
    # Resume checkpoints: every N optimizer steps (0 = off) and/or every M seconds, plus one at
    # each epoch end; the newest K are kept. Work lost to a kill is at most one interval.
    checkpoint_every_steps: int = 0
    checkpoint_every_s: float = 300.0
    keep_last_checkpoints: int = Field(default=2, ge=1)
    # Seconds between the worker's maintenance passes: expired leases, lost queue messages.
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    # Each worker process refreshes its row in `workers` this often; one silent for 3 intervals
    # no longer counts among the workers a queued job shows (`queue.workers`).
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    # Attempts without progress (the worker died, or met a transient error, before saving a resume
    # checkpoint past where it started) before a job fails for good; attempts that made progress
    # don't count.
    max_attempts: int = Field(default=5, ge=1)

    # Webhooks (sent by the workers): attempts per delivery before it is marked failed; the wait
    # before retry n is webhook_backoff_s * 2^(n-1) seconds, at most webhook_backoff_max_s; each
    # POST (resolving, connecting, sending, waiting for the answer) gives up after webhook_timeout_s
    # seconds in all; an idle dispatcher looks for due deliveries
    # every webhook_poll_s seconds.
    webhook_max_attempts: int = Field(default=10, ge=1)
    webhook_backoff_s: float = Field(default=5.0, ge=0)
    webhook_backoff_max_s: float = Field(default=600.0, ge=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_poll_s: float = Field(default=1.0, gt=0)
    # Whether webhooks may go to loopback / private / link-local addresses. Honoured only in
    # single-user mode (auth off); with keys on, such destinations are always refused.
    webhook_allow_private: bool = False
    # Deliveries sent at once by one worker, and at most this many of them to one endpoint (a
    # slow endpoint holds only its own slots).
    webhook_parallel: int = Field(default=8, ge=1)
    webhook_parallel_per_endpoint: int = Field(default=2, ge=1)
    # Webhook endpoints one tenant may register (each job end is sent to every matching one).
    max_webhooks_per_tenant: int = Field(default=20, ge=1)

    # Logs: "json" (one object a line: ts, level, logger, message, request_id, job_id, extras)
    # or "text" (human-readable).
    log_format: Literal["json", "text"] = "json"

    @property
    def auth_enabled(self) -> bool:
        if self.auth != "auto":
            return self.auth == "on"
        return self.bind_host not in LOOPBACK

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'adapt.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def extra_model_dirs(self) -> list[Path]:
        return [Path(p) for p in self.model_dirs.split(":") if p.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
