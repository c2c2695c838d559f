"""Model selections: check the dataset and the candidates, record the request, send it after
commit; the worker (workers.model_selection) computes the scores."""
from sqlalchemy.orm import Session

from app.base_models import catalog
from app.config import Settings
from app.datasets import repository as datasets
from app.errors import AppError, InvalidInput
from app.ids import new_id
from app.model_selection import lifecycle
from app.model_selection.schemas import MAX_CANDIDATES, SelectionCreate
from app.models import ModelSelection
from app.repository import get_owned


def _candidates(session: Session, settings: Settings, tenant: str, task: str,
                asked: list[str] | str) -> list[str]:
    """The base model ids to rank: each must exist (404) and do the dataset's task (422)."""
    if asked == "all":
        ids = [e.id for e in catalog.list_entries(settings, session, tenant) if e.task == task]
        if not ids:
            raise InvalidInput(f"No base model here does {task}.", param="candidates")
        return ids[:MAX_CANDIDATES]
    ids = list(dict.fromkeys(asked))
    if not ids or len(ids) > MAX_CANDIDATES:
        raise InvalidInput(f"Name 1 to {MAX_CANDIDATES} distinct base models, or \"all\".",
                           param="candidates")
    for base_model in ids:
        try:
            entry = catalog.resolve(settings, base_model, session, tenant)
        except AppError as exc:  # unknown (404), weights missing or hub off (422)
            exc.param = "candidates"
            raise
        if entry.task != task:
            raise InvalidInput(f"Base model {base_model!r} does {entry.task} but the dataset is "
                               f"{task}: rank base models of the dataset's task.",
                               param="candidates", code="task_mismatch")
    return ids


def create(session: Session, settings: Settings, tenant: str,
           req: SelectionCreate) -> ModelSelection:
    ds = datasets.get(session, tenant, req.dataset, param="dataset")
    if ds.status != "ready":
        raise InvalidInput(f"Dataset {ds.id} is {ds.status}, not ready.", param="dataset",
                           code="dataset_not_ready")
    if len(ds.labels) < 2:
        raise InvalidInput("Ranking needs a dataset with at least two labels.", param="dataset")
    ids = _candidates(session, settings, tenant, ds.task, req.candidates)
    return lifecycle.enqueue(session, ModelSelection(
        id=new_id("msel"), tenant_id=tenant, dataset_id=ds.id, candidates=ids,
        max_examples=req.max_examples))


def get(session: Session, tenant: str, selection_id: str) -> ModelSelection:
    return get_owned(session, ModelSelection, selection_id, tenant, noun="model selection",
                     param="id")
