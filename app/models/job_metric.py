from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class JobMetric(Base):
    """One logged value. (job, step, name) is unique: re-running a step never duplicates a row."""

    __tablename__ = "job_metrics"
    __table_args__ = (UniqueConstraint("job_id", "step", "name", name="uq_job_metrics_step_name"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    epoch: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
