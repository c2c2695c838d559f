from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TenantOwned
from app.models.quality_report import QualityReport


class Dataset(TenantOwned, Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_examples: Mapped[int]
    labels: Mapped[list]
    # Notes on an accepted upload (e.g. labels that look alike); None when there are none.
    warnings: Mapped[list | None]
    class_counts: Mapped[dict]
    text_column: Mapped[str] = mapped_column(String(255))
    label_column: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    # Reports on the dataset alone, oldest first (a new one replaces the finished ones).
    own_quality_reports: Mapped[list[QualityReport]] = relationship(
        primaryjoin="and_(Dataset.id == QualityReport.dataset_id, "
                    "QualityReport.against_dataset_id.is_(None))",
        order_by=QualityReport.created_at, viewonly=True, lazy="selectin")

    @property
    def quality(self) -> QualityReport | None:
        """The dataset's newest own quality report (None when none was asked for)."""
        return self.own_quality_reports[-1] if self.own_quality_reports else None
