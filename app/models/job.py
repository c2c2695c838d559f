from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned

ACTIVE_STATUSES = ("queued", "running", "cancelling")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


class Job(TenantOwned, Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    base_model: Mapped[str] = mapped_column(String(255))
    training_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    validation_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    validation_split: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict]
    early_stopping: Mapped[dict | None]
    select_checkpoint_by: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    suffix: Mapped[str | None] = mapped_column(String(64))
    user_metadata: Mapped[dict] = mapped_column("metadata")
    # {"device": "auto"|"cpu"|"gpu", "gpus": n}: which workers may take it (app.queue.queue_for);
    # NULL on jobs made before resources existed = run anywhere.
    resources: Mapped[dict | None]
    progress: Mapped[dict | None]
    metrics: Mapped[dict | None]
    error: Mapped[dict | None]
    model_id: Mapped[str | None] = mapped_column(String(40))
    # The model this job derives from: a distill job's teacher, a prune job's source model.
    source_model_id: Mapped[str | None] = mapped_column(String(40))
    # A distill job's transfer set: a text dataset whose texts the teacher alone labels (their
    # own labels are not read), added to the training examples.
    transfer_dataset_id: Mapped[str | None] = mapped_column(String(40))
    # A dry run (POST /v1/jobs with dry_run): the worker runs a pre-flight (app.ml.preflight)
    # instead of training, writes it to `preflight`, and makes no model. A real job with
    # batch_size "auto" records the pre-flight it ran before training there too.
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    preflight: Mapped[dict | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts that ended (died, or met a transient error) without saving a resume checkpoint past
    # the one they started from: ADAPT_MAX_ATTEMPTS bounds these, not attempts that made progress.
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    saved_step: Mapped[int | None] = mapped_column(Integer)  # the newest resume checkpoint's step
    start_step: Mapped[int | None] = mapped_column(Integer)  # saved_step when this attempt began
    # Lease: the worker that runs the job and until when its claim holds without a heartbeat.
    worker_id: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def teacher(self) -> str | None:
        return self.source_model_id if self.method == "distill" else None

    @property
    def source_model(self) -> str | None:
        return self.source_model_id if self.method == "prune" else None
