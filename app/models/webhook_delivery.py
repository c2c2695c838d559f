from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class WebhookDelivery(TenantOwned, Base):
    """One event owed to one endpoint (the outbox): written in the transaction that ends the job,
    sent by a worker's dispatcher, retried with backoff until a 2xx or the last attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    # The request body, frozen when the job ended: {id, type, created_at, data: {job}}.
    payload: Mapped[dict]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Attempts claimed so far; a claim is a conditional UPDATE on this number (the fence).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a pending delivery may be claimed next (while one is in flight: when its claim lapses).
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    completed_at: Mapped[datetime | None]
