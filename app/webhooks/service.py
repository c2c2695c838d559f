"""Webhook endpoints of a tenant: created (the signing secret shown once), listed, deleted, and
their deliveries."""
import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, NotFound
from app.ids import new_id
from app.models import WebhookDelivery, WebhookEndpoint
from app.pagination import Page, paginate
from app.webhooks.schemas import WebhookCreate


def create(session: Session, settings: Settings, tenant: str,
           req: WebhookCreate) -> WebhookEndpoint:
    """A new endpoint with a fresh signing secret (256 random bits)."""
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint)
                           .where(WebhookEndpoint.tenant_id == tenant))
    if count >= settings.max_webhooks_per_tenant:
        raise Conflict(f"This tenant already has {count} webhooks, the most allowed; delete "
                       "one first.", code="too_many_webhooks")
    row = WebhookEndpoint(id=new_id("wh"), tenant_id=tenant, url=req.url, events=req.events,
                          description=req.description,
                          secret=f"whsec_{secrets.token_urlsafe(32)}")
    session.add(row)
    session.flush()
    return row


def get(session: Session, tenant: str, webhook_id: str) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, webhook_id)
    if row is None or row.tenant_id != tenant:
        raise NotFound(f"No webhook with id {webhook_id!r}.", param="id")
    return row


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[WebhookEndpoint], bool]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant)
    return paginate(session, stmt, WebhookEndpoint.id, page)


def remove(session: Session, tenant: str, webhook_id: str) -> WebhookEndpoint:
    """Delete the endpoint and its deliveries: nothing more is sent to it."""
    row = get(session, tenant, webhook_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
    session.delete(row)
    return row


def deliveries(session: Session, tenant: str, webhook_id: str,
               page: Page) -> tuple[list[WebhookDelivery], bool]:
    row = get(session, tenant, webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id)
    return paginate(session, stmt, WebhookDelivery.id, page)
