"""Webhooks: URLs told when a tenant's jobs succeed, fail or are cancelled (an addition to the
v1 contract; README, "Webhooks")."""
from typing import Annotated

from fastapi import APIRouter, Depends

from app.keys.auth import Tenant
from app.db import DbSession
from app.deps import SettingsDep
from app.idempotency import IdempotencyDep, request_hash
from app.pagination import Page, page_params
from app.schemas import ERROR_RESPONSES, ListOf, links
from app.webhooks import service
from app.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=WebhookCreated,
             responses=links("webhook_id", "get_webhook", "list_deliveries", "delete_webhook"))
def create_webhook(req: WebhookCreate, session: DbSession, settings: SettingsDep, tenant: Tenant,
                   idem: IdempotencyDep):
    """Register a URL for job events; the response shows the signing `secret` (and only this
    response, or its Idempotency-Key replay)."""
    def _create() -> dict:
        row = service.create(session, settings, tenant, req)
        return WebhookCreated(**WebhookOut.model_validate(row).model_dump(),
                              secret=row.secret).model_dump(mode="json")

    return idem.run(session, tenant, request_hash("webhook", req.model_dump(mode="json")), _create)


@router.get("", response_model=ListOf[WebhookOut])
def list_webhooks(session: DbSession, tenant: Tenant, page: Annotated[Page, Depends(page_params)]):
    rows, has_more = service.list_page(session, tenant, page)
    return ListOf[WebhookOut](data=rows, has_more=has_more)


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: str, session: DbSession, tenant: Tenant):
    return service.get(session, tenant, webhook_id)


@router.delete("/{webhook_id}", response_model=WebhookOut)
def delete_webhook(webhook_id: str, session: DbSession, tenant: Tenant):
    """Delete the webhook; its pending deliveries are dropped."""
    return WebhookOut.model_validate(service.remove(session, tenant, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=ListOf[DeliveryOut])
def list_deliveries(webhook_id: str, session: DbSession, tenant: Tenant,
                    page: Annotated[Page, Depends(page_params)]):
    """Deliveries to this webhook, newest first: status, attempts, the last response or error."""
    rows, has_more = service.deliveries(session, tenant, webhook_id, page)
    return ListOf[DeliveryOut](data=rows, has_more=has_more)
