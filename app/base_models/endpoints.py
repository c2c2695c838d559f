from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from app.keys.auth import Tenant, current_caller
from app.base_models import catalog, service
from app.db import DbSession
from app.deps import SettingsDep, StorageDep
from app.errors import InvalidInput
from app.idempotency import IdempotencyDep, request_hash
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES
from app.uploads import stage

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
    architecture: Annotated[str, Form(min_length=1, max_length=64)],
    name: Annotated[str | None, Form(max_length=255)] = None,
    task: Annotated[str | None, Form(max_length=64)] = None,
    config: Annotated[str | None, Form(max_length=1 << 16,
                                       description="text models: the transformers config, JSON")] = None,
    tokenizer: Annotated[str, Form(max_length=255, description="text models: the base model "
                                   "whose tokenizer to use")] = "minilm-l6-v2",
) -> dict:
    """Bring your own pretrained weights: a torchvision architecture, or a transformers model type
    with its config (text); returns a `bm_…` base model usable in jobs."""
    staged = stage(storage, settings.max_upload_bytes, file.file)
    try:
        digest = request_hash("base_model", staged.sha256, file.filename, architecture, name, task,
                              config, tokenizer)
        tokenizer_dir = None
        if architecture in catalog.TEXT_MODEL_TYPES:
            tok = catalog.resolve(settings, tokenizer, session, tenant)
            if tok.task != "text-classification" or tok.source == "hub":
                raise InvalidInput(f"{tokenizer!r} has no local tokenizer to use.",
                                   param="tokenizer")
            tokenizer_dir = tok.local_path()
        return idem.run(session, tenant, digest, lambda: catalog.uploaded_entry(service.create(
            session, storage, tenant, staged=staged, filename=file.filename or "",
            architecture=architecture, name=name, task=task, config=config,
            tokenizer_dir=tokenizer_dir)).to_api())
    finally:
        staged.discard()
