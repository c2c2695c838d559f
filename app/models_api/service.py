"""Models: made from a checkpoint, evaluated on the validation data, serving predictions."""
import base64
import binascii
from functools import partial

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import after_commit, read_only
from app.errors import Conflict, InvalidInput, NotFound
from app.ids import new_id
from app.jobs import repository as jobs
from app.ml.vision import check_pixels, decode_image, image_size
from app.models import Checkpoint, Export, Model
from app.models_api import model_server, repository
from app.models_api.inference import model_cache
from app.models_api.schemas import ModelOut
from app.pagination import Page
from app.repository import owned_row
from app.storage import Storage


def create_from_checkpoint(session: Session, ckpt: Checkpoint, name: str | None = None,
                           compression: dict | None = None) -> Model:
    """A model serving the checkpoint's weights, with the checkpoint's validation report; a
    distill or prune job's model records its source and what compression changed."""
    job, task = repository.origin(session, ckpt)
    meta_labels = (ckpt.evaluation or {}).get("confusion_matrix", {}).get("labels", [])
    default_name = ":".join(p for p in (job.base_model, job.suffix, ckpt.id) if p)
    model = Model(id=new_id("mdl"), tenant_id=ckpt.tenant_id, name=name or default_name,
                  task=task, labels=meta_labels, base_model=job.base_model,
                  job_id=job.id, checkpoint_id=ckpt.id, metrics=ckpt.metrics,
                  evaluation=ckpt.evaluation, source_model_id=job.source_model_id,
                  compression=compression)
    session.add(model)
    session.flush()
    return model


def create(session: Session, tenant: str, checkpoint_id: str, name: str | None) -> Model:
    ckpt = jobs.checkpoint(session, tenant, checkpoint_id, param="checkpoint")
    return create_from_checkpoint(session, ckpt, name)


def get(session: Session, tenant: str, model_id: str) -> Model:
    return repository.get(session, tenant, model_id)


OUT_COLUMNS = ("id", "name", "task", "labels", "base_model", "job_id", "checkpoint_id", "metrics",
               "source_model_id", "compression", "created_at")


def read_one(tenant: str, model_id: str) -> dict:
    """GET /v1/models/{id} without a session or a commit: the ModelOut as a JSON-ready dict."""
    return ModelOut.model_validate(read_only(
        lambda conn: owned_row(conn, Model, OUT_COLUMNS, model_id, tenant))).model_dump(mode="json")


def descendants(session: Session, tenant: str, model_id: str) -> list[Model]:
    get(session, tenant, model_id)
    return repository.descendants(session, tenant, model_id)


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[Model], bool]:
    return repository.list_page(session, tenant, page)


def delete(session: Session, storage: Storage, tenant: str, model_id: str,
           settings: Settings | None = None) -> Model:
    """Delete the model and its exports (the database cascades) and, once that has committed,
    the exports' archives (a worker still building one finds its row gone and removes it)."""
    model = get(session, tenant, model_id)
    archives = [key for key in session.scalars(select(Export.storage_key).where(
        Export.model_id == model.id)) if key]
    session.delete(model)
    model_cache().drop(model.id)
    if settings is not None and settings.model_server:
        model_server.drop(settings, model.id)
    for key in archives:
        after_commit(session, partial(storage.delete, key))
    return model


def _check_inputs(model: Model, inputs: list, settings: Settings, decode: bool = True) -> list:
    """Texts for a text model; decoded images (from base64 or uploaded bytes) for an image one
    (their bytes, without decode: a model server decodes them). Every image's size is read from
    its header and checked (per image, and for the request as a whole) before any of them is
    decoded."""
    if model.task == "text-classification":
        if any(not isinstance(t, str) or not t.strip() for t in inputs):
            raise InvalidInput("Every input must be a non-empty string.", param="inputs")
        return inputs
    raws, total = [], 0
    for i, item in enumerate(inputs):
        raw = item if isinstance(item, bytes) else _b64(getattr(item, "image_base64", None), i)
        try:
            width, height = image_size(raw)
            check_pixels(width, height, settings.max_image_pixels)
        except ValueError as exc:
            code = "image_too_large" if "too large" in str(exc) else None
            raise InvalidInput(f"Input {i}: {exc}.", param=f"inputs.{i}", code=code) from None
        total += width * height
        if total > settings.max_predict_pixels:
            raise InvalidInput(
                f"Input {i}: the images up to this one hold {total / 1e6:.1f} megapixels; one "
                f"predict request may hold at most {settings.max_predict_pixels / 1e6:g} "
                "(send fewer or smaller images per request).", param=f"inputs.{i}",
                code="too_many_pixels")
        raws.append(raw)
    if not decode:
        return raws
    decoded = []
    for i, raw in enumerate(raws):
        try:
            decoded.append(decode_image(raw, settings.max_image_pixels))
        except ValueError as exc:
            raise InvalidInput(f"Input {i}: {exc}.", param=f"inputs.{i}") from None
    return decoded


def _b64(value: str | None, i: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"Input {i}: an image model takes {{\"image_base64\": \"…\"}} "
                           "objects (or multipart files).", param=f"inputs.{i}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"Input {i}: image_base64 is not valid base64.",
                           param=f"inputs.{i}.image_base64") from None


def _checked(session: Session, settings: Settings, tenant: str, model_id: str, inputs: list,
             decode: bool) -> tuple[Model, list, Checkpoint]:
    model = get(session, tenant, model_id)
    if not inputs:
        raise InvalidInput("Send at least one input.", param="inputs")
    if len(inputs) > settings.max_predict_inputs:
        raise InvalidInput(f"At most {settings.max_predict_inputs} inputs per request; got "
                           f"{len(inputs)}.", param="inputs", code="too_many_inputs")
    inputs = _check_inputs(model, inputs, settings, decode)
    return model, inputs, repository.checkpoint_of(session, model)


def prepare_remote_predict(session: Session, settings: Settings, tenant: str, model_id: str,
                           inputs: list) -> tuple[dict, list]:
    """({id, storage_key} of the model, checked inputs: texts or image bytes) for a model
    server: every 4xx is decided here, in the API."""
    model, inputs, ckpt = _checked(session, settings, tenant, model_id, inputs, decode=False)
    return _ref(model, ckpt), inputs


_REMOTE_REF = (select(Model.id, Model.task, Model.base_model, Checkpoint.storage_key)
               .join(Checkpoint, Checkpoint.id == Model.checkpoint_id)
               .where(Model.id == bindparam("object_id"), Model.tenant_id == bindparam("tenant")))


def read_remote_predict(settings: Settings, tenant: str, model_id: str,
                        inputs: list) -> tuple[dict, list]:
    """prepare_remote_predict on the read path, for texts: one Core SELECT of the model and its
    checkpoint, no session and no commit. Raises what prepare_remote_predict would (404, the
    input checks); an image model's inputs are left to it (InvalidInput here)."""
    row = read_only(lambda conn: conn.execute(
        _REMOTE_REF, {"object_id": model_id, "tenant": tenant}).first())
    if row is None:
        raise NotFound(f"No model with id {model_id!r}.", param="id")
    if row.task != "text-classification" or not inputs \
            or len(inputs) > settings.max_predict_inputs:
        raise InvalidInput("not a lean request: the regular route checks it", param="inputs")
    inputs = _check_inputs(row, inputs, settings, decode=False)
    return {"id": row.id, "storage_key": row.storage_key, "base_model": row.base_model}, inputs


def _ref(model: Model, ckpt: Checkpoint) -> dict:
    """What a model server needs to load a model: its id, its checkpoint's storage key, and its
    base model (a base's models all go to one server, where they share its backbone)."""
    return {"id": model.id, "storage_key": ckpt.storage_key, "base_model": model.base_model}


def prepare_predict(session: Session, storage: Storage, settings: Settings, tenant: str,
                    model_id: str, inputs: list, top_k: int | None) -> tuple[object, list, int]:
    """(loaded predictor, checked inputs, top_k): everything a forward pass needs."""
    model, inputs, ckpt = _checked(session, settings, tenant, model_id, inputs, decode=True)
    # fetched (from object storage: into the local cache) only when the model is not loaded
    predictor = model_cache().get(model.id, lambda: storage.fetch(ckpt.storage_key))
    return predictor, inputs, top_k or min(len(predictor.labels), 5)


def prepare_predict_many(session: Session, settings: Settings, tenant: str, model_ids: list[str],
                         inputs: list, decode: bool = True) -> tuple[list[dict], list]:
    """({id, storage_key, base_model} of each model, checked inputs) for a fan-out: models of
    this tenant, each once, all of one task on one base model (they share its backbone pass);
    images decoded, or (decode=False, for a model server) their bytes."""
    if not model_ids:
        raise InvalidInput("Name at least one model.", param="models")
    if len(model_ids) > settings.predict_max_models:
        raise InvalidInput(f"At most {settings.predict_max_models} models per request "
                           f"(ADAPT_PREDICT_MAX_MODELS); got {len(model_ids)}.", param="models",
                           code="too_many_models")
    for i, model_id in enumerate(model_ids):
        if model_id in model_ids[:i]:
            raise InvalidInput(f"Model {model_id} is named twice.", param=f"models.{i}",
                               code="duplicate_models")
    models = []
    for i, model_id in enumerate(model_ids):
        try:
            models.append(get(session, tenant, model_id))
        except NotFound as exc:
            raise NotFound(exc.message, param=f"models.{i}") from None
    for i, model in enumerate(models):
        if model.task != models[0].task:
            raise InvalidInput(f"Model {model.id} is {_kind(model)} model, model {models[0].id} "
                               f"{_kind(models[0])} one: one request fans out to models of one "
                               "task (and one base model).", param=f"models.{i}",
                               code="unsupported_model_task")
        if model.base_model != models[0].base_model:
            raise InvalidInput(f"Model {model.id} is on base model {model.base_model}, model "
                               f"{models[0].id} on {models[0].base_model}: one request fans out "
                               "to models on one base model.", param=f"models.{i}",
                               code="mixed_base_models")
    if not inputs:
        raise InvalidInput("Send at least one input.", param="inputs")
    if len(inputs) > settings.max_predict_inputs:
        raise InvalidInput(f"At most {settings.max_predict_inputs} inputs per request; got "
                           f"{len(inputs)}.", param="inputs", code="too_many_inputs")
    inputs = _check_inputs(models[0], inputs, settings, decode)
    return [_ref(model, repository.checkpoint_of(session, model)) for model in models], inputs


def _kind(model: Model) -> str:
    return "a text" if model.task == "text-classification" else "an image"


def prepare_explain(session: Session, storage: Storage, settings: Settings, tenant: str,
                    model_id: str, inputs: list, target: str | None, steps: int | None,
                    decode: bool = True) -> tuple[dict, list, int]:
    """({id, storage_key, base_model} of the model, checked inputs, steps) for an explanation:
    texts, or decoded images (their bytes, without decode: a model server decodes them). Every
    cap and mismatch is a 4xx here, in the API, before anything is loaded or computed."""
    model = get(session, tenant, model_id)
    if not inputs:
        raise InvalidInput("Send at least one input.", param="inputs")
    if len(inputs) > settings.explain_max_inputs:
        raise InvalidInput(f"At most {settings.explain_max_inputs} inputs per explain request "
                           f"(ADAPT_EXPLAIN_MAX_INPUTS); got {len(inputs)}: send them in "
                           "several requests.", param="inputs", code="too_many_inputs")
    if steps is not None and not 1 <= steps <= settings.explain_max_steps:
        raise InvalidInput(f"steps must be from 1 to {settings.explain_max_steps} "
                           f"(ADAPT_EXPLAIN_MAX_STEPS); got {steps}.", param="steps",
                           code="too_many_steps")
    if target is not None and target not in model.labels:
        raise InvalidInput(f"target {target!r} is not a label of model {model.id}; its labels: "
                           f"{', '.join(model.labels)}.", param="target", code="unknown_label")
    _check_modality(model, inputs)
    inputs = _check_inputs(model, inputs, settings, decode)
    ckpt = repository.checkpoint_of(session, model)
    if ckpt is None or not storage.exists(f"{ckpt.storage_key}/adapt.json"):
        raise Conflict(f"Model {model.id} is not ready: its checkpoint's files are not in "
                       "place yet.", code="model_not_ready")
    return _ref(model, ckpt), inputs, steps or settings.explain_default_steps


def explain_in_process(storage: Storage, ref: dict, inputs: list, target: str | None, steps: int,
                       top_k: int | None) -> dict:
    """The explanation (model_server.explained) computed here, with this process's model cache:
    for an API without a model server."""
    predictor = model_cache().get(ref["id"], lambda: storage.fetch(ref["storage_key"]))
    return model_server.explained(predictor, inputs, target, steps, top_k)


def _check_modality(model: Model, inputs: list) -> None:
    """Word scores are for text models, heatmaps for image models: say so for the wrong kind."""
    is_text = model.task == "text-classification"
    for i, item in enumerate(inputs):
        if is_text and not isinstance(item, str):
            raise InvalidInput(f"Input {i}: model {model.id} is a text model: it explains texts "
                               "(one score per word), not images.", param=f"inputs.{i}",
                               code="wrong_input_kind")
        if not is_text and isinstance(item, str):
            raise InvalidInput(f"Input {i}: model {model.id} is an image model: it explains "
                               "images with a heatmap, not texts with word scores; send "
                               '{"image_base64": "…"} objects or multipart files.',
                               param=f"inputs.{i}", code="wrong_input_kind")
