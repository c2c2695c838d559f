"""Models: made from a checkpoint, evaluated on the validation data, serving predictions."""
import base64
import binascii

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.ids import new_id
from app.jobs import repository as jobs
from app.ml.vision import check_pixels, decode_image, image_size
from app.models import Checkpoint, Model
from app.models_api import repository
from app.models_api.inference import model_cache
from app.pagination import Page
from app.storage import LocalStorage


def create_from_checkpoint(session: Session, ckpt: Checkpoint, name: str | None = None) -> Model:
    """A model serving the checkpoint's weights, with the checkpoint's validation report."""
    job, task = repository.origin(session, ckpt)
    meta_labels = (ckpt.evaluation or {}).get("confusion_matrix", {}).get("labels", [])
    default_name = ":".join(p for p in (job.base_model, job.suffix, ckpt.id) if p)
    model = Model(id=new_id("mdl"), tenant_id=ckpt.tenant_id, name=name or default_name,
                  task=task, labels=meta_labels, base_model=job.base_model,
                  job_id=job.id, checkpoint_id=ckpt.id, metrics=ckpt.metrics,
                  evaluation=ckpt.evaluation)
    session.add(model)
    session.flush()
    return model


def create(session: Session, tenant: str, checkpoint_id: str, name: str | None) -> Model:
    ckpt = jobs.checkpoint(session, tenant, checkpoint_id, param="checkpoint")
    return create_from_checkpoint(session, ckpt, name)


def get(session: Session, tenant: str, model_id: str) -> Model:
    return repository.get(session, tenant, model_id)


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[Model], bool]:
    return repository.list_page(session, tenant, page)


def delete(session: Session, tenant: str, model_id: str) -> Model:
    model = get(session, tenant, model_id)
    session.delete(model)
    model_cache().drop(model.id)
    return model


def _check_inputs(model: Model, inputs: list, settings: Settings) -> list:
    """Texts for a text model; decoded images (from base64 or uploaded bytes) for an image one.
    Every image's size is read from its header and checked (per image, and for the request as
    a whole) before any of them is decoded."""
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


def prepare_predict(session: Session, storage: LocalStorage, settings: Settings, tenant: str,
                    model_id: str, inputs: list, top_k: int | None) -> tuple[object, list, int]:
    """(loaded predictor, checked inputs, top_k): everything a forward pass needs."""
    model = get(session, tenant, model_id)
    if not inputs:
        raise InvalidInput("Send at least one input.", param="inputs")
    if len(inputs) > settings.max_predict_inputs:
        raise InvalidInput(f"At most {settings.max_predict_inputs} inputs per request; got "
                           f"{len(inputs)}.", param="inputs", code="too_many_inputs")
    inputs = _check_inputs(model, inputs, settings)
    ckpt = repository.checkpoint_of(session, model)
    predictor = model_cache().get(model.id, storage.local_path(ckpt.storage_key))
    return predictor, inputs, top_k or min(len(predictor.labels), 5)
