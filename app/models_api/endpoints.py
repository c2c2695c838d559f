from typing import Annotated

from fastapi import APIRouter, Depends

from app.auth import Tenant
from app.db import DbSession
from app.deps import SettingsDep, StorageDep
from app.idempotency import IdempotencyDep, request_hash
from app.errors import NotFound
from app.models_api import service
from app.models_api.schemas import Evaluation, ModelCreate, ModelOut, PredictIn, PredictOut
from app.pagination import Page, page_params
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES, ListOf

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ModelOut)
def create_model(req: ModelCreate, session: DbSession, tenant: Tenant, idem: IdempotencyDep):
    """Make a model from any checkpoint."""
    return idem.run(session, tenant, request_hash("model", req.model_dump(mode="json")),
                    lambda: ModelOut.model_validate(service.create(
                        session, tenant, req.checkpoint, req.name)).model_dump(mode="json"))


@router.get("", response_model=ListOf[ModelOut])
def list_models(session: DbSession, tenant: Tenant, page: Annotated[Page, Depends(page_params)]):
    rows, has_more = service.list_page(session, tenant, page)
    return ListOf[ModelOut](data=rows, has_more=has_more)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, session: DbSession, tenant: Tenant):
    return service.get(session, tenant, model_id)


@router.delete("/{model_id}", response_model=ModelOut)
def delete_model(model_id: str, session: DbSession, tenant: Tenant):
    return service.delete(session, tenant, model_id)


@router.get("/{model_id}/evaluation", response_model=Evaluation)
def model_evaluation(model_id: str, session: DbSession, tenant: Tenant):
    """The model's report on the validation data its job held out."""
    model = service.get(session, tenant, model_id)
    if not model.evaluation:
        raise NotFound(f"Model {model.id} has no evaluation.", code="no_evaluation")
    return model.evaluation


@router.post("/{model_id}/predict", response_model=PredictOut,
             dependencies=[rate_limit("predict", "rate_limit_predict_per_minute")])
def predict(model_id: str, req: PredictIn, session: DbSession, storage: StorageDep,
            settings: SettingsDep, tenant: Tenant):
    """Labels and scores for up to 256 inputs (the forward pass runs in a worker thread)."""
    return service.predict(session, storage, settings, tenant, model_id, req.inputs, req.top_k)
