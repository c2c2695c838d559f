from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from app.auth import Tenant, current_caller
from app.base_models import catalog, service
from app.datasets.service import stage
from app.db import DbSession
from app.deps import SettingsDep, StorageDep
from app.idempotency import IdempotencyDep, request_hash
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1/base-models", tags=["base models"],
                   dependencies=[Depends(current_caller)], responses=ERROR_RESPONSES)


@router.get("")
def list_base_models(settings: SettingsDep, session: DbSession, tenant: Tenant) -> dict:
    """The catalog of base models that jobs can adapt (bundled, local, and your uploads)."""
    return {"object": "list",
            "data": [e.to_api() for e in catalog.list_entries(settings, session, tenant)],
            "has_more": False}


@router.post("", status_code=201,
             dependencies=[rate_limit("upload", "rate_limit_uploads_per_minute")])
def upload_base_model(
    session: DbSession, storage: StorageDep, settings: SettingsDep, tenant: Tenant,
    idem: IdempotencyDep,
    file: Annotated[UploadFile, File(description=".safetensors (or a .pth/.pt state dict)")],
    architecture: Annotated[str, Form(max_length=64)],
    name: Annotated[str | None, Form(max_length=255)] = None,
    task: Annotated[str | None, Form(max_length=64)] = None,
) -> dict:
    """Bring your own pretrained weights for a known architecture; returns a `bm_…` base model."""
    staged = stage(storage, settings, file.file)
    try:
        digest = request_hash("base_model", staged.sha256, file.filename, architecture, name, task)
        return idem.run(session, tenant, digest, lambda: catalog._uploaded(service.create(
            session, storage, tenant, staged=staged, filename=file.filename or "",
            architecture=architecture, name=name, task=task)).to_api())
    finally:
        staged.discard()
