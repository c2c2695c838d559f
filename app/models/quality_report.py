from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned

QUALITY_FINAL_STATUSES = ("succeeded", "failed")


class QualityReport(TenantOwned, Base):
    """A dataset's data-quality report, computed by a worker after the upload: the dataset on
    its own (against None), or its duplicates across another dataset (its validation data).
    A failed report never changes the dataset."""

    __tablename__ = "quality_reports"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"),
                                            index=True)
    against_dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|succeeded|failed
    summary: Mapped[dict | None]   # counts and warnings (shown in the dataset object)
    details: Mapped[dict | None]   # the sections, with the rows they name
    error: Mapped[dict | None]
    # The worker computing it and until when its claim holds (renewed while it works).
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
