"""Webhook endpoints of a tenant: created (the signing secret shown once), listed, deleted, and
their deliveries."""
import secrets

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import serialize_on
from app.errors import Conflict
from app.ids import new_id
from app.models import WebhookDelivery, WebhookEndpoint
from app.pagination import Page
from app.webhooks import repository
from app.webhooks.schemas import WebhookCreate


def create(session: Session, settings: Settings, tenant: str,
           req: WebhookCreate) -> WebhookEndpoint:
    """A new endpoint with a fresh signing secret (256 random bits)."""
    serialize_on(session, f"webhooks:{tenant}")  # held to commit: the cap holds under concurrency
    count = repository.count(session, tenant)
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
    return repository.get(session, tenant, webhook_id)


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[WebhookEndpoint], bool]:
    return repository.list_page(session, tenant, page)


def remove(session: Session, tenant: str, webhook_id: str) -> WebhookEndpoint:
    """Delete the endpoint and its deliveries: nothing more is sent to it."""
    row = get(session, tenant, webhook_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
    session.delete(row)
    return row


def deliveries(session: Session, tenant: str, webhook_id: str,
               page: Page) -> tuple[list[WebhookDelivery], bool]:
    return repository.deliveries_page(session, get(session, tenant, webhook_id).id, page)
