"""A distill or prune job's model, measured beside the model it derives from (its teacher, or the
model it pruned) on the job's own validation data, recorded as the new model's `compression`."""
import logging
from collections.abc import Callable
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.ml.data import Splits
from app.ml.measure import compare, figures
from app.models import Checkpoint, Model
from app.models_api.service import create_from_checkpoint
from app.storage import get_storage
from workers.plan import JobPlan

log = logging.getLogger(__name__)

MakeModel = Callable[[Session, Checkpoint], Model]


def model_maker(plan: JobPlan, splits: Splits) -> MakeModel:
    """create_from_checkpoint, with the compression figures for a distill or prune job."""
    if plan.source is None:
        return create_from_checkpoint
    with session_scope() as s:
        key = s.scalars(select(Checkpoint.storage_key).where(
            Checkpoint.job_id == plan.job_id, Checkpoint.is_best)).first()
    if key is None:  # lifecycle.succeed says there is no checkpoint
        return create_from_checkpoint
    images_zip = plan.train.path if plan.train.format == "zip" else None
    measure = partial(figures, inputs=list(splits.val_x), labels=list(splits.val_y),
                      images_zip=images_zip)
    try:
        mine, source = measure(get_storage().fetch(key)), measure(plan.source.checkpoint)
    except Exception:  # noqa: BLE001 - the model is good; only its figures are missing
        log.exception("job %s: measuring the %s model failed", plan.job_id, plan.source.kind)
        return create_from_checkpoint
    compression = {"kind": plan.source.kind, "source_model": plan.source.model_id, **mine,
                   "source": source, "delta": compare(mine, source),
                   "measured_on": {"examples": min(len(splits.val_y), 2000),
                                   "latency": "forward pass, batch 1, CPU, median"}}
    log.info("job %s: %s model measured: %s", plan.job_id, plan.source.kind, compression["delta"])
    return partial(create_from_checkpoint, compression=compression)
