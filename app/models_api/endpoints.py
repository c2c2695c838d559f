import asyncio
import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.keys.auth import Tenant, tenant_of
from app.db import DbSession
from app.deps import SettingsDep, StorageDep
from app.idempotency import IdempotencyDep, request_hash
from app.errors import InvalidInput, NotFound
from app.jobs import service as jobs_service
from app.jobs.schemas import JobOut, PruneCreate
from app.models_api import batching, model_server, service
from app.models_api.inference import mark_unsure, predict_many
from app.models_api.schemas import (Evaluation, ExplainIn, ExplainOut, ModelCreate, ModelOut,
                                    PredictIn, PredictManyIn, PredictManyOut, PredictOut)
from app.observability import observe_predict, record_model_cache
from app.pagination import Page, page_params
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES, ListOf, links

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)
fanout_router = APIRouter(prefix="/v1", tags=["models"], responses=ERROR_RESPONSES)


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
async def get_model(model_id: str, request: Request):
    # the read path: one thread-pool hop, one Core SELECT, no session or commit (as GET /v1/jobs/…)
    tenant = await tenant_of(request)
    return JSONResponse(await run_in_threadpool(service.read_one, tenant, model_id))


@router.delete("/{model_id}", response_model=ModelOut)
def delete_model(model_id: str, session: DbSession, storage: StorageDep, settings: SettingsDep,
                 tenant: Tenant):
    """Delete the model, its exports and their archives (its checkpoint stays with its job)."""
    return service.delete(session, storage, tenant, model_id, settings)


@router.post("/{model_id}/prune", status_code=201, response_model=JobOut,
             responses=links("job_id", "get_job", "cancel_job"),
             dependencies=[rate_limit("job", "rate_limit_jobs_per_minute")])
def prune_model(model_id: str, req: PruneCreate, session: DbSession, settings: SettingsDep,
                tenant: Tenant, idem: IdempotencyDep):
    """Start a job that prunes the model's FFN channels to `target` and retrains it briefly on
    its own training data; its new model's `compression` compares it with this one."""
    return idem.run(session, tenant, request_hash("prune", {"model": model_id,
                                                            **req.model_dump(mode="json")}),
                    lambda: jobs_service.out(session, settings, jobs_service.create_prune(
                        session, settings, tenant, model_id, req)).model_dump(mode="json"))


@router.get("/{model_id}/descendants", response_model=ListOf[ModelOut])
def model_descendants(model_id: str, session: DbSession, tenant: Tenant):
    """The models distilled or pruned from this one (newest first, at most 100)."""
    rows = service.descendants(session, tenant, model_id)
    return ListOf[ModelOut](data=rows, has_more=False)


@router.get("/{model_id}/evaluation", response_model=Evaluation)
def model_evaluation(model_id: str, session: DbSession, tenant: Tenant):
    """The model's report on the validation data its job held out."""
    model = service.get(session, tenant, model_id)
    if not model.evaluation:
        raise NotFound(f"Model {model.id} has no evaluation.", code="no_evaluation")
    return model.evaluation


_IMAGE = {"type": "object", "additionalProperties": False, "required": ["image_base64"],
          "properties": {"image_base64": {"type": "string"}}}
_TOP_K = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1000}, {"type": "null"}]}
_EXPLAIN_FIELDS = {"target": {"anyOf": [{"type": "string", "maxLength": 1000}, {"type": "null"}]},
                   "steps": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}}


def _body(max_items: int, fields: dict, form_fields: dict) -> dict:
    """The request body of predict and explain: JSON inputs, or images as multipart `files`."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["inputs"],
            "properties": {"inputs": {"type": "array", "minItems": 1, "maxItems": max_items,
                                      "items": {"anyOf": [{"type": "string"}, _IMAGE]}},
                           "top_k": _TOP_K, **fields}}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["files"], "additionalProperties": False,
            "properties": {"files": {"type": "array", "minItems": 1, "maxItems": max_items,
                                     "items": {"type": "string", "format": "binary"}},
                           "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
                           **form_fields}}}}}}


_FORM_EXPLAIN = {"target": {"type": "string", "maxLength": 1000},
                 "steps": {"type": "integer", "minimum": 1}}
_MIN_CONFIDENCE = {"type": "number", "minimum": 0, "maximum": 1}
_PREDICT_BODY = _body(256, {"explain": {"type": "boolean"}, **_EXPLAIN_FIELDS,
                            "min_confidence": {"anyOf": [_MIN_CONFIDENCE, {"type": "null"}]}},
                      {"explain": {"type": "boolean"}, **_FORM_EXPLAIN,
                       "min_confidence": _MIN_CONFIDENCE})
_EXPLAIN_BODY = _body(256, _EXPLAIN_FIELDS, _FORM_EXPLAIN)


def _form_confidence(form) -> float | None:
    value = form.get("min_confidence")
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise InvalidInput("min_confidence must be a number from 0 to 1.", param="min_confidence")
    return number


def _form_int(form, name: str, low: int, high: int | None) -> int | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if not (isinstance(value, str) and value.isdigit() and low <= int(value)
            and (high is None or int(value) <= high)):
        raise InvalidInput(f"{name} must be an integer from {low}"
                           + (f" to {high}." if high else " up."), param=name)
    return int(value)


async def _predict_request(request: Request, settings,
                           schema: type[PredictIn | ExplainIn] = PredictIn) -> tuple[list, dict]:
    """(inputs, options) from JSON {"inputs": [...], ...} or multipart `files` (images), parsed
    and bounded; options: top_k, target, steps (and explain, for predict)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        most = max(settings.max_predict_inputs, settings.explain_max_inputs)
        form = await request.form(max_files=most + 1, max_fields=8)
        files = [f for f in form.getlist("files") if hasattr(f, "read")]
        target = form.get("target")
        options = {"top_k": _form_int(form, "top_k", 1, 1000),
                   "steps": _form_int(form, "steps", 1, None),
                   "target": target if isinstance(target, str) and target else None,
                   "explain": schema is PredictIn
                   and str(form.get("explain", "")).lower() in ("true", "1", "on"),
                   "min_confidence": _form_confidence(form) if schema is PredictIn else None}
        return [await f.read() for f in files], options
    try:
        parsed = schema.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return list(parsed.inputs), parsed.model_dump(exclude={"inputs"})


async def _explained(model_id: str, session, storage, settings, tenant: str, inputs: list,
                     options: dict) -> dict:
    """{method, thresholds, explanations: one prediction with its attributions per input}: on the
    model's server when there is one (the checks stay here), else here, off the event loop."""
    remote = bool(settings.model_server)
    ref, inputs, steps = await run_in_threadpool(
        service.prepare_explain, session, storage, settings, tenant, model_id, inputs,
        options.get("target"), options.get("steps"), decode=not remote)
    if remote:  # not through the batcher there either: gradients, and a cost of their own
        answer = await model_server.explain(settings, ref, inputs, options.get("target"), steps,
                                            options.get("top_k"))
        record_model_cache(answer["hit"])
        return answer
    return await run_in_threadpool(service.explain_in_process, storage, ref, inputs,
                                   options.get("target"), steps, options.get("top_k"))


@router.post("/{model_id}/predict", response_model=PredictOut, openapi_extra=_PREDICT_BODY,
             response_model_exclude_none=True,
             dependencies=[rate_limit("predict", "rate_limit_predict_per_minute")])
async def predict(model_id: str, request: Request, session: DbSession, storage: StorageDep,
                  settings: SettingsDep, tenant: Tenant):
    """Labels and scores for up to 256 inputs: texts, or images as base64 JSON or multipart
    `files`. Requests for one model that arrive together share a forward pass (micro-batching);
    decoding and the forward pass run off the event loop. With `"explain": true` each
    prediction also carries its explanation, as POST /explain answers (and within its caps)."""
    started = time.perf_counter()
    with batching.incoming() as arrival:
        inputs, options = await _predict_request(request, settings)
        if options["explain"]:  # not through the batcher: gradients, and a cost of its own
            arrival.done()
            explained = await _explained(model_id, session, storage, settings, tenant, inputs,
                                         options)
            return predictions_response(model_id, explained["thresholds"],
                                        explained["explanations"], options["min_confidence"])
        if settings.model_server:
            arrival.done()  # this process batches nothing: the model server does
            ref, inputs = await run_in_threadpool(service.prepare_remote_predict, session,
                                                  settings, tenant, model_id, inputs)
            [answer] = await model_server.predict(settings, [ref], inputs, options["top_k"])
            record_model_cache(answer["hit"])
            observe_predict(time.perf_counter() - started)
            return predictions_response(model_id, answer["thresholds"],
                                        answer["predictions"], options["min_confidence"])
        predictor, inputs, top_k = await run_in_threadpool(
            service.prepare_predict, session, storage, settings, tenant, model_id, inputs,
            options["top_k"])
        future = predictor.batcher.submit(inputs, top_k, arrival)
    predictions = await asyncio.wrap_future(future)
    observe_predict(time.perf_counter() - started)
    return predictions_response(model_id, predictor.thresholds, predictions,
                                options["min_confidence"])


def predictions_response(model_id: str, thresholds: dict | None, predictions: list[dict],
                 min_confidence: float | None) -> JSONResponse:
    """The predict body: unsure ones marked (their label null, which the response model's
    exclude_none would otherwise drop)."""
    marked = mark_unsure(predictions, min_confidence, thresholds)
    body = PredictOut(model=model_id, predictions=marked).model_dump(mode="json",
                                                                     exclude_none=True)
    for pred in body["predictions"]:
        pred.setdefault("label", None)
    return JSONResponse(body)


@router.post("/{model_id}/explain", response_model=ExplainOut, openapi_extra=_EXPLAIN_BODY,
             response_model_exclude_none=True,
             dependencies=[rate_limit("predict", "rate_limit_predict_per_minute")])
async def explain(model_id: str, request: Request, session: DbSession, storage: StorageDep,
                  settings: SettingsDep, tenant: Tenant):
    """Each input's prediction and why: for texts one score per word (integrated gradients,
    `steps` of them, merged from tokens to the words of the text, with character offsets); for
    images a heatmap at the image's resolution (integrated gradients from a blurred copy). `target` picks the label to explain
    (default: each input's predicted label). At most ADAPT_EXPLAIN_MAX_INPUTS inputs and
    ADAPT_EXPLAIN_MAX_STEPS steps; computed off the event loop, on the model server when there
    is one."""
    inputs, options = await _predict_request(request, settings, ExplainIn)
    explained = await _explained(model_id, session, storage, settings, tenant, inputs, options)
    return {"object": "explanation", "model": model_id, "method": explained["method"],
            "steps": options.get("steps") or settings.explain_default_steps,
            "explanations": explained["explanations"]}


_FANOUT_MODELS = {"type": "array", "minItems": 1, "maxItems": 32, "uniqueItems": True,
                  "items": {"type": "string"}}
_FANOUT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["models", "inputs"],
        "properties": {"models": _FANOUT_MODELS,
                       "inputs": {"type": "array", "minItems": 1, "maxItems": 256,
                                  "items": {"anyOf": [{"type": "string"}, _IMAGE]}},
                       "top_k": _TOP_K,
                       "min_confidence": {"anyOf": [_MIN_CONFIDENCE, {"type": "null"}]}}}},
    "multipart/form-data": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["models", "files"],
        "properties": {"models": _FANOUT_MODELS,
                       "files": {"type": "array", "minItems": 1, "maxItems": 256,
                                 "items": {"type": "string", "format": "binary"}},
                       "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
                       "min_confidence": _MIN_CONFIDENCE}}}}}}


async def _fanout_request(request: Request, settings) -> PredictManyIn:
    """The fan-out's request from JSON, or from multipart: `models` (one field per model),
    `files` (images), `top_k`, `min_confidence`."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            return PredictManyIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
    form = await request.form(max_files=settings.max_predict_inputs + 1,
                              max_fields=settings.predict_max_models + 8)
    files = [f for f in form.getlist("files") if hasattr(f, "read")]
    return PredictManyIn.model_construct(
        models=[m for m in form.getlist("models") if isinstance(m, str)],
        inputs=[await f.read() for f in files], top_k=_form_int(form, "top_k", 1, 1000),
        min_confidence=_form_confidence(form))


@fanout_router.post("/predict", response_model=PredictManyOut, response_model_exclude_none=True,
                    openapi_extra=_FANOUT_BODY,
                    dependencies=[rate_limit("predict", "rate_limit_predict_per_minute")])
async def predict_fanout(request: Request, session: DbSession, storage: StorageDep,
                         settings: SettingsDep, tenant: Tenant):
    """The predictions of several models of one task on one base model for the same inputs,
    each as POST /v1/models/{id}/predict answers it: texts are tokenized once and the base
    encoder runs once for all of them (head models share its output; LoRA models run as one
    mixed-adapter batch); images (base64 JSON or multipart `files`) are decoded once and the
    frozen network of image head models runs once, each applying its own head. At most
    ADAPT_PREDICT_MAX_MODELS models."""
    started = time.perf_counter()
    req = await _fanout_request(request, settings)
    models, inputs = await run_in_threadpool(service.prepare_predict_many, session, settings,
                                             tenant, req.models, req.inputs,
                                             not settings.model_server)
    if settings.model_server:  # the base's model server runs the one backbone pass
        results = await model_server.predict_many_remote(settings, models, inputs, req.top_k,
                                                         req.min_confidence)
    else:
        refs = [(m["id"], partial(storage.fetch, m["storage_key"])) for m in models]
        results = await run_in_threadpool(predict_many, refs, inputs, req.top_k,
                                          req.min_confidence)
    observe_predict(time.perf_counter() - started)
    data = []
    for model_id, predictions in zip(req.models, results, strict=True):
        body = PredictOut(model=model_id, predictions=predictions).model_dump(mode="json",
                                                                             exclude_none=True)
        for pred in body["predictions"]:
            pred.setdefault("label", None)
        data.append(body)
    return JSONResponse({"object": "prediction_list", "data": data})
