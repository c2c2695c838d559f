from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned


class Model(TenantOwned, Base):
    """A fine-tuned model that serves predictions, made from one checkpoint."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list]
    base_model: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    metrics: Mapped[dict]
    evaluation: Mapped[dict | None]
    # Lineage: the model it was distilled from (teacher) or pruned from, and what that changed
    # (params, size, latency, accuracy beside the source's: workers/compression.py).
    source_model_id: Mapped[str | None] = mapped_column(String(40), index=True)
    compression: Mapped[dict | None]
