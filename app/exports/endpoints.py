from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, StreamingResponse

from app.db import DbSession
from app.deps import StorageDep
from app.exports import service
from app.exports.schemas import ExportCreate, ExportOut
from app.idempotency import IdempotencyDep, request_hash
from app.keys.auth import Tenant
from app.pagination import Page, page_params
from app.schemas import ERROR_RESPONSES, ListOf

router = APIRouter(prefix="/v1", tags=["exports"], responses=ERROR_RESPONSES)
_LINKS = {202: {"links": {op: {"operationId": op, "parameters": {"export_id": "$response.body#/id"}}
                          for op in ("get_export", "download_export", "delete_export")}}}


@router.post("/models/{model_id}/exports", status_code=202, response_model=ExportOut,
             responses=_LINKS)
def create_export(model_id: str, req: ExportCreate, session: DbSession, tenant: Tenant,
                  idem: IdempotencyDep):
    """Export the model to ONNX (optionally int8 or fp16); a worker builds the archive and
    measures it beside the original on the model's validation data."""
    return idem.run(session, tenant, request_hash("export", model_id, req.model_dump(mode="json")),
                    lambda: ExportOut.model_validate(service.create(
                        session, tenant, model_id, req)).model_dump(mode="json"),
                    status_code=202)


@router.get("/models/{model_id}/exports", response_model=ListOf[ExportOut])
def list_exports(model_id: str, session: DbSession, tenant: Tenant,
                 page: Annotated[Page, Depends(page_params)]):
    rows, has_more = service.list_page(session, tenant, model_id, page)
    return ListOf[ExportOut](data=rows, has_more=has_more)


@router.get("/models/{model_id}/exports/{export_id}", response_model=ExportOut)
def get_model_export(model_id: str, export_id: str, session: DbSession, tenant: Tenant):
    return service.get(session, tenant, export_id, model_id)


@router.get("/exports/{export_id}", response_model=ExportOut)
def get_export(export_id: str, session: DbSession, tenant: Tenant):
    return service.get(session, tenant, export_id)


@router.get("/exports/{export_id}/download", response_class=FileResponse,
            responses={200: {"content": {"application/zip": {}}}})
def download_export(export_id: str, session: DbSession, storage: StorageDep, tenant: Tenant):
    """The archive: model.onnx, the tokenizer (text) or preprocess.json (images), labels.json
    and a README with a runnable example (409 until the export has succeeded)."""
    export = service.archive(session, tenant, export_id)
    if storage.remote:  # streamed from the object store, nothing written on the API's disk
        headers = {"Content-Disposition": f'attachment; filename="{export.id}.zip"',
                   "Content-Length": str(export.size_bytes), "X-Checksum-Sha256": export.sha256}
        return StreamingResponse(storage.iter_bytes(export.storage_key),
                                 media_type="application/zip", headers=headers)
    return FileResponse(storage.fetch(export.storage_key), media_type="application/zip",
                        filename=f"{export.id}.zip", headers={"X-Checksum-Sha256": export.sha256})


@router.delete("/exports/{export_id}", response_model=ExportOut)
def delete_export(export_id: str, session: DbSession, storage: StorageDep, tenant: Tenant):
    return service.delete(session, storage, tenant, export_id)
