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
    # Blob storage (datasets, checkpoints, uploaded base models, resume checkpoints). Empty →
    # files under data_dir/blobs. "s3://bucket/prefix" → any S3-compatible object store: then
    # API and workers need no shared directory (README, "Object storage (S3)").
    storage_url: str = Field(default="", pattern=r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?)?$")
    # The S3 endpoint (empty → AWS's, from the region) and credentials; empty ones fall back to
    # boto3's usual chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, ~/.aws, roles).
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Multipart part size for uploads to S3, bytes (S3's minimum is 5 MiB): what one upload
    # holds in memory per part in flight (at most 4 at once).
    s3_multipart_chunk_bytes: int = Field(default=8 << 20, ge=5 << 20)
    # With object storage: the most bytes of local copies kept in data_dir/cache/blobs
    # (datasets, base models, checkpoints read for predict or download), least recently used
    # evicted first. The copy being read is kept even when it alone is larger.
    storage_cache_bytes: int = Field(default=10 << 30, ge=0)
    # Celery broker URL. Empty → the embedded SQLAlchemy transport on a SQLite file in data_dir.
    broker_url: str = ""
    # Worker device: "auto" picks CUDA when present, else CPU. Or "cpu", "cuda", "cuda:1".
    worker_device: str = "auto"
    # Worker processes that `adapt-serve --worker-only` (or the worker adapt-serve starts) runs:
    # "" = one, on worker_device; "all" = one per visible GPU, or a number N = one per GPU on the
    # first N; each process is pinned to its GPU(s) with CUDA_VISIBLE_DEVICES and consumes the gpu
    # queues. With no GPU visible it runs one CPU worker.
    worker_gpus: str = Field(default="", pattern=r"^(|all|[0-9]+)$")
    # GPUs each of those processes holds (a job asking for N GPUs needs a worker holding N).
    gpus_per_worker: int = Field(default=1, ge=1)
    # The niceness of a CPU worker that `adapt-serve` starts beside the API on the same machine:
    # predictions and polls come first, training takes the CPU time they leave (0 = the same
    # priority as the API; a worker started with --worker-only is left as it is).
    worker_nice: int = Field(default=10, ge=0, le=19)
    # That worker also pauses between training steps while the model server on the same cores
    # holds prediction or explain requests, at most this many seconds per step (so that training
    # goes on under a steady stream of requests; 0 = never pauses). adapt-serve points it at the
    # model server's activity file (app.predict_activity) in predict_activity_file.
    worker_yield_max_pause_s: float = Field(default=1.0, ge=0)
    predict_activity_file: str = ""
    # The worker classes this deployment runs, so that a job no worker could take is refused (422)
    # at creation: comma-separated "cpu", "gpu" or "gpu:N" (GPU workers holding N GPUs each), e.g.
    # "cpu,gpu:1". Live workers (their heartbeats) count too; with this empty and none heard from,
    # every job is accepted. adapt-serve fills it in for the worker it starts itself.
    worker_classes: str = Field(default="", pattern=r"^\s*((cpu|gpu(:[0-9]+)?)\s*(,\s*|$))*$")
    # Seconds a worker given SIGTERM has to checkpoint its running job and exit; past this it
    # exits anyway (the job then resumes from its previous checkpoint). Orchestrators must wait
    # longer before they SIGKILL (Kubernetes terminationGracePeriodSeconds; deploy/README.md).
    shutdown_checkpoint_s: float = Field(default=120.0, gt=0)
    # Extra base models: a list of local model directories (transformers layout), separated by ":".
    model_dirs: str = ""
    # Where torchvision ImageNet weight files (resnet18-f37072fd.pth, …) are looked for, ":"-
    # separated, before the torch cache (~/.cache/torch/hub/checkpoints).
    vision_weights_dir: str = ""
    # Base models shipped split across several packages (all-mpnet-base-v2) are reassembled here
    # on first use, once per machine (about 440 MB for mpnet).
    base_model_cache_dir: Path = Path.home() / ".cache" / "adapt" / "base_models"
    # Frozen-encoder features shared across `head` jobs: most bytes kept (LRU beyond), 0 = off.
    feature_cache_bytes: int = 2 << 30
    # Data-quality reports (app/ml/quality): one is computed by a worker after every upload
    # (false: only when asked for, POST /v1/datasets/{id}/quality); at most this many rows of a
    # dataset are examined (a seeded sample beyond: the report says so); the base models whose
    # frozen features find near-duplicates and label errors; when two examples count as
    # near-duplicates: texts by the cosine similarity of those features or the Jaccard overlap
    # of their character 5-grams after normalisation (MinHash); images by perceptual hashes at
    # most quality_near_hamming bits (of 64) apart.
    quality_reports: bool = True
    quality_max_rows: int = Field(default=10_000, ge=10)
    quality_max_images: int = Field(default=2_000, ge=10)  # the same cap for image datasets
    quality_text_model: str = "minilm-l6-v2"
    quality_image_model: str = "mobilenet-v2-imagenet"
    quality_near_cosine: float = Field(default=0.97, gt=0.0, le=1.0)
    quality_near_jaccard: float = Field(default=0.78, gt=0.0, le=1.0)
    quality_near_hamming: int = Field(default=4, ge=0, le=32)
    # Pre-flight (dry runs, batch_size "auto"; app.ml.preflight): the memory a job may take on a
    # CPU worker, MiB (0 = the memory available when the pre-flight starts; on CUDA the GPU's
    # memory is the budget), the real steps timed, and the largest batch size "auto" picks.
    preflight_memory_budget_mb: int = Field(default=0, ge=0)
    preflight_steps: int = Field(default=3, ge=1, le=100)
    auto_batch_size_max: int = Field(default=64, ge=1, le=1024)
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
    # POST /v1/predict: most models one request fans out to (all on one base model).
    predict_max_models: int = Field(default=32, ge=1)
    # Fine-tuned models kept loaded in the API process (LRU): at most this many encoders (a whole
    # model is one; a backbone shared by head/lora models is one), and at most this many bytes of
    # weights, each backbone counted once (the most recently used model always stays).
    model_cache_size: int = Field(default=4, ge=1)
    model_cache_bytes: int = Field(default=4 << 30, ge=0)
    # Predict micro-batching: requests for one model arriving together share a forward pass of at
    # most predict_max_batch inputs; a batch waits at most predict_max_wait_ms for more, and only
    # while other predict requests are on their way (an idle server never waits).
    predict_max_batch: int = Field(default=64, ge=1)
    predict_max_wait_ms: float = Field(default=2.0, ge=0)
    # Model servers (app.models_api.model_server): "" = predict runs in the API process; else
    # comma-separated Unix socket paths of model servers, one per device, each owning the loaded
    # models and batching the requests of every API process (a model's requests go to one of
    # them, chosen by its id). adapt-serve starts its own and sets this, unless it is set.
    model_server: str = ""
    # Inputs a model server holds admitted but unanswered before it refuses more (503 with
    # Retry-After); and the seconds a predict waits for its answer (a model load included).
    model_server_max_queued: int = Field(default=2048, ge=1)
    predict_timeout_s: float = Field(default=60.0, gt=0)
    # Explanations (POST /v1/models/{id}/explain, or predict with "explain": true): most inputs
    # in one request, and the integrated-gradients steps (default and most a request may ask
    # for). Each step is a forward and backward pass over the request's inputs.
    explain_max_inputs: int = Field(default=32, ge=1)
    explain_default_steps: int = Field(default=16, ge=1)
    explain_max_steps: int = Field(default=128, ge=1)
    # With a model server, explanations run there on one thread of their own (never the predict
    # batcher's): it holds at most this many explain requests (running or waiting) before it
    # refuses more (503 with Retry-After), and an explain waits at most explain_timeout_s for its
    # answer (the wait for its turn, a model load and the gradients).
    model_server_max_explains: int = Field(default=8, ge=1)
    explain_timeout_s: float = Field(default=300.0, gt=0)
    # Precision of forward passes: "auto" = bf16 autocast on GPUs and CPUs (AMX) that compute it
    # natively, float32 elsewhere. Predict may also use fp16 (auto picks it on GPUs without bf16).
    inference_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    train_precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Image jobs: DataLoader worker processes decoding and augmenting the images beside the
    # training loop. "auto" = on CUDA min(8, the CPUs the worker may use − 1), shared among the
    # processes of a multi-GPU job; on CPU 0 (in the training process: workers would only compete
    # with training for the same cores). Or a number (0 = in the training process).
    dataloader_workers: str = Field(default="auto", pattern=r"^(auto|[0-9]+)$")

    # Tenant that owns objects when auth is off (the embedded single-user default).
    default_tenant: str = "default"
    # API keys: "on", "off", or "auto" = on unless the server is bound to a loopback address
    # (adapt-serve records its --host in bind_host; an unknown host counts as exposed).
    auth: Literal["auto", "on", "off"] = "auto"
    bind_host: str = ""
    # Largest JSON (non-upload) request body, bytes.
    max_json_bytes: int = 1 << 20
    # Seconds an API process trusts a key it has verified before it looks the key up again
    # (0 = every request). A revoked key stops working at once all the same, on every machine
    # that shares the database: a revocation bumps a generation that is read on every request,
    # and a changed one empties every process's cache. It lives in Redis with a Redis broker,
    # else in the database on PostgreSQL (bumped in the revoking transaction, read with one
    # primary-key SELECT), else (SQLite) in a file in data_dir.
    key_cache_s: float = Field(default=30.0, ge=0)
    # Rate limits: "auto" = on when API keys are (off in single-user mode), "on", "off". With a
    # Redis broker they are counted in Redis (one limit per key across all API processes and
    # machines), else by each API process on its own.
    rate_limits: Literal["auto", "on", "off"] = "auto"
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
    def rate_limits_enabled(self) -> bool:
        return self.auth_enabled if self.rate_limits == "auto" else self.rate_limits == "on"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'adapt.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def declared_workers(self) -> dict[str, int]:
        """worker_classes as {device class: the most GPUs one of its workers holds}."""
        out: dict[str, int] = {}
        for item in filter(None, (p.strip() for p in self.worker_classes.split(","))):
            device, _, gpus = item.partition(":")
            n = int(gpus or 1) if device == "gpu" else 0
            out[device] = max(out.get(device, 0), n)
        return out

    @property
    def extra_model_dirs(self) -> list[Path]:
        return [Path(p) for p in self.model_dirs.split(":") if p.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
