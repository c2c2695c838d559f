from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import WebhookDelivery, WebhookEndpoint
from app.pagination import Page, paginate
from app.repository import get_owned


def get(session: Session, tenant: str, webhook_id: str) -> WebhookEndpoint:
    return get_owned(session, WebhookEndpoint, webhook_id, tenant, noun="webhook")


def count(session: Session, tenant: str) -> int:
    return session.scalar(select(func.count()).select_from(WebhookEndpoint)
                          .where(WebhookEndpoint.tenant_id == tenant))


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[WebhookEndpoint], bool]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant)
    return paginate(session, stmt, WebhookEndpoint.id, page)


def subscribed(session: Session, tenant: str, event: str) -> list[WebhookEndpoint]:
    """The tenant's endpoints that want `event`, oldest first."""
    return [e for e in session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant).order_by(WebhookEndpoint.id)) if event in e.events]


def deliveries_page(session: Session, endpoint_id: str,
                    page: Page) -> tuple[list[WebhookDelivery], bool]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    return paginate(session, stmt, WebhookDelivery.id, page)
