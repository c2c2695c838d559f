"""POST /v1/model-selection: rank base models for a dataset before training (LogME, k-NN)."""
from fastapi import APIRouter

from app.db import DbSession
from app.deps import SettingsDep
from app.idempotency import IdempotencyDep, request_hash
from app.keys.auth import Tenant
from app.model_selection import service
from app.model_selection.schemas import SelectionCreate, SelectionOut
from app.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1/model-selection", tags=["model selection"],
                   responses=ERROR_RESPONSES)
_LINKS = {202: {"links": {"get_model_selection": {
    "operationId": "get_model_selection",
    "parameters": {"selection_id": "$response.body#/id"}}}}}


def _out(row) -> dict:
    out = SelectionOut.model_validate(row)
    if out.results:
        out.recommended = out.results[0].base_model
    return out.model_dump(mode="json")


@router.post("", status_code=202, response_model=SelectionOut, responses=_LINKS)
def create_model_selection(req: SelectionCreate, session: DbSession, settings: SettingsDep,
                           tenant: Tenant, idem: IdempotencyDep):
    """Rank base models (the named ones, or "all" of the dataset's task) by how well their
    frozen features fit the dataset: LogME and a k-NN probe, computed by a worker. The features
    go to the shared feature cache, so a `head` job on the winner starts warm."""
    return idem.run(session, tenant,
                    request_hash("model_selection", req.model_dump(mode="json")),
                    lambda: _out(service.create(session, settings, tenant, req)),
                    status_code=202)


@router.get("/{selection_id}", response_model=SelectionOut)
def get_model_selection(selection_id: str, session: DbSession, tenant: Tenant):
    return _out(service.get(session, tenant, selection_id))
