from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class Worker(Base):
    """A worker process taking jobs: it refreshes heartbeat_at every ADAPT_WORKER_HEARTBEAT_S and
    removes its row when it shuts down (a killed one's row goes stale, then is swept)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Its device class ("cpu" or "gpu") and the GPUs it holds; NULL = a worker from before
    # classes, which consumes only the `training` queue (jobs that run anywhere).
    device: Mapped[str | None] = mapped_column(String(8))
    gpus: Mapped[int | None] = mapped_column(Integer)
