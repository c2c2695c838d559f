from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned


class ModelSelection(TenantOwned, Base):
    """A ranking of base models for one dataset by transferability (LogME, k-NN probe), computed
    by a worker from the frozen models' features."""

    __tablename__ = "model_selections"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"),
                                            index=True)
    candidates: Mapped[list]                      # base model ids, as requested ("all" expanded)
    max_examples: Mapped[int]                     # a seeded random subset of larger datasets
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|succeeded|failed
    # [{"base_model", "logme", "knn_accuracy", "rank", "seconds": {...}, ...}], best first
    results: Mapped[list | None]
    error: Mapped[dict | None]
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
