from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned

EXPORT_FINAL_STATUSES = ("succeeded", "failed")


class Export(TenantOwned, Base):
    """A model converted for deployment elsewhere (ONNX, optionally quantised), built by a worker,
    with its accuracy and latency measured beside the original model's."""

    __tablename__ = "exports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    quantize: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|succeeded|failed
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    storage_key: Mapped[str | None] = mapped_column(String(512))
    error: Mapped[dict | None]
    evaluation: Mapped[dict | None]
    # The worker building it and until when its claim holds (renewed while it works): a claim
    # that lapses means the worker died, and the maintenance pass fails the export.
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
