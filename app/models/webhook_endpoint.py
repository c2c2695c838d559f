from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned


class WebhookEndpoint(TenantOwned, Base):
    """A URL that is told when a tenant's jobs end. The signing secret is kept as it is (not
    hashed): every delivery is signed with it."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list]
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(64))
