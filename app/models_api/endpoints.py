import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.keys.auth import Tenant
from app.db import DbSession
from app.deps import SettingsDep, StorageDep
from app.idempotency import IdempotencyDep, request_hash
from app.errors import InvalidInput, NotFound
from app.models_api import batching, service
from app.models_api.schemas import Evaluation, ModelCreate, ModelOut, PredictIn, PredictOut
from app.observability import observe_predict
from app.pagination import Page, page_params
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES, ListOf, links

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ModelOut,
             responses=links("model_id", "get_model", "model_evaluation", "delete_model"))
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


_IMAGE = {"type": "object", "additionalProperties": False, "required": ["image_base64"],
          "properties": {"image_base64": {"type": "string"}}}
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["inputs"],
        "properties": {"inputs": {"type": "array", "minItems": 1, "maxItems": 256,
                                  "items": {"anyOf": [{"type": "string"}, _IMAGE]}},
                       "top_k": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1000},
                                           {"type": "null"}]}}}},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["files"], "additionalProperties": False,
        "properties": {"files": {"type": "array", "minItems": 1, "maxItems": 256,
                                 "items": {"type": "string", "format": "binary"}},
                       "top_k": {"type": "integer", "minimum": 1, "maximum": 1000}}}}}}}


async def _predict_request(request: Request, settings) -> PredictIn | tuple[list[bytes], int | None]:
    """JSON {"inputs": [...]} or multipart `files` (images), parsed and bounded."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=settings.max_predict_inputs + 1, max_fields=4)
        files = [f for f in form.getlist("files") if hasattr(f, "read")]
        top_k = form.get("top_k")
        if top_k is not None and not (isinstance(top_k, str) and top_k.isdigit()
                                      and 1 <= int(top_k) <= 1000):
            raise InvalidInput("top_k must be an integer from 1 to 1000.", param="top_k")
        return [await f.read() for f in files], int(top_k) if top_k else None
    try:
        return PredictIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.post("/{model_id}/predict", response_model=PredictOut, openapi_extra=_PREDICT_BODY,
             dependencies=[rate_limit("predict", "rate_limit_predict_per_minute")])
async def predict(model_id: str, request: Request, session: DbSession, storage: StorageDep,
                  settings: SettingsDep, tenant: Tenant):
    """Labels and scores for up to 256 inputs: texts, or images as base64 JSON or multipart
    `files`. Requests for one model that arrive together share a forward pass (micro-batching);
    decoding and the forward pass run off the event loop."""
    started = time.perf_counter()
    with batching.incoming() as arrival:
        parsed = await _predict_request(request, settings)
        inputs, top_k = (parsed if isinstance(parsed, tuple)
                         else (list(parsed.inputs), parsed.top_k))
        predictor, inputs, top_k = await run_in_threadpool(
            service.prepare_predict, session, storage, settings, tenant, model_id, inputs, top_k)
        future = predictor.batcher.submit(inputs, top_k, arrival)
    predictions = await asyncio.wrap_future(future)
    observe_predict(time.perf_counter() - started)
    return {"object": "prediction", "model": model_id, "predictions": predictions}
