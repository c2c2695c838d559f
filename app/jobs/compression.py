"""Checks for the jobs that derive a model from another: a distill job's teacher, a prune job's
source model. Every refusal is a 4xx raised before anything is written."""
import json

from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.models import Checkpoint, Dataset, Job, Model
from app.repository import get_owned
from app.storage import get_storage


def _model(session: Session, tenant: str, model_id: str, param: str) -> Model:
    """The tenant's model (404 like a missing one for another tenant's), its files in place. A
    job id is answered with what that job's state means: not ready yet, or which model it made."""
    if model_id.startswith("job_"):
        job = get_owned(session, Job, model_id, tenant, param=param)
        if job.model_id is None:
            raise Conflict(f"Job {job.id} is {job.status}: it has no model (yet) to use as "
                           f"{param}.", param=param, code="model_not_ready")
        raise InvalidInput(f"{param} takes a model id: job {job.id} made model {job.model_id}.",
                           param=param)
    model = get_owned(session, Model, model_id, tenant, param=param)
    ckpt = session.get(Checkpoint, model.checkpoint_id)
    if ckpt is None or not get_storage().exists(f"{ckpt.storage_key}/adapt.json"):
        raise Conflict(f"Model {model.id}'s checkpoint files are not in place (yet).",
                       param=param, code="model_not_ready")
    return model


def check_teacher(session: Session, tenant: str, teacher_id: str | None, base_model: str,
                  train: Dataset, hp: dict) -> str:
    """The teacher's id, once it is known to fit the student's data: same task, same labels;
    with student_layers, the same base model and at most its depth."""
    if not teacher_id:
        raise InvalidInput("Method distill needs a teacher: the id of a fine-tuned model "
                           "(mdl_…).", param="teacher")
    teacher = _model(session, tenant, teacher_id, "teacher")
    if teacher.task != train.task:
        raise InvalidInput(f"Teacher {teacher.id} does {teacher.task} but dataset {train.id} is "
                           f"{train.task}.", param="teacher", code="task_mismatch")
    if list(teacher.labels) != list(train.labels):
        raise InvalidInput(f"Teacher {teacher.id} predicts labels {teacher.labels[:20]} but "
                           f"dataset {train.id} has {list(train.labels)[:20]}: they must be the "
                           "same.", param="teacher", code="labels_mismatch")
    layers = hp.get("student_layers")
    if layers:
        if teacher.base_model != base_model:
            raise InvalidInput(f"student_layers copies layers of the teacher's encoder: "
                               f"base_model must be the teacher's ({teacher.base_model}), "
                               f"not {base_model}.", param="base_model",
                               code="base_model_mismatch")
        depth = teacher_depth(session, teacher)
        if depth is not None and layers > depth:
            raise InvalidInput(f"student_layers is {layers} but the teacher has {depth} layers.",
                               param="hyperparameters.student_layers")
    return teacher.id


# encoders whose layers have BERT's attention layout (attention.self.query/key/value +
# attention.output.dense): the ones whose heads app.ml.prune can remove
HEAD_PRUNABLE = {"bert", "roberta", "xlm-roberta", "electra", "camembert"}


def encoder_config(session: Session, model: Model) -> dict:
    """A text model's encoder config (read from its checkpoint's config.json; {} if unreadable)."""
    ckpt = session.get(Checkpoint, model.checkpoint_id)
    try:
        with get_storage().open(f"{ckpt.storage_key}/config.json") as f:
            config = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return config.get("adapt_encoder") or config


def teacher_depth(session: Session, model: Model) -> int | None:
    """The number of encoder layers of a text model."""
    return encoder_config(session, model).get("num_hidden_layers")


def check_prune_source(session: Session, tenant: str, model_id: str,
                       target) -> tuple[Model, Job]:
    """(the model to prune, the job that trained it) when the model and the target fit."""
    model = _model(session, tenant, model_id, "model")
    if model.task == "image-classification":
        for name in ("ffn", "heads"):
            if getattr(target, name) > 0:
                raise InvalidInput(f"target.{name} applies to text models; an image model's "
                                   "convolution channels are pruned with target.channels.",
                                   param=f"target.{name}", code="unsupported_target")
        if target.channels == 0:
            raise InvalidInput("Nothing to prune: give target.channels (the share of each "
                               "layer's convolution channels to remove, below 1).",
                               param="target.channels")
    elif target.channels > 0:
        raise InvalidInput("target.channels applies to image models; a text model's FFN "
                           "channels and attention heads are pruned with target.ffn and "
                           "target.heads.", param="target.channels", code="unsupported_target")
    elif target.ffn == 0 and target.heads == 0:
        raise InvalidInput("Nothing to prune: give target.ffn or target.heads (the share of each "
                           "layer's FFN channels or attention heads to remove, below 1).",
                           param="target")
    kind = encoder_config(session, model).get("model_type") if target.heads > 0 else None
    if target.heads > 0 and kind not in HEAD_PRUNABLE:
        raise InvalidInput(f"Attention-head pruning needs a BERT-style encoder "
                           f"({', '.join(sorted(HEAD_PRUNABLE))}); this model's is {kind!r}. "
                           "Prune its FFN channels (target.ffn).", param="target.heads",
                           code="unsupported_target")
    job = session.get(Job, model.job_id) if model.job_id else None
    if job is None:
        raise InvalidInput(f"Model {model.id} has no training job whose data could retrain it.",
                           param="model")
    return model, job
