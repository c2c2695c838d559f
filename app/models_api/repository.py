from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Dataset, Job, Model
from app.pagination import Page, paginate
from app.repository import get_owned


def get(session: Session, tenant: str, model_id: str) -> Model:
    return get_owned(session, Model, model_id, tenant)


def list_page(session: Session, tenant: str, page: Page) -> tuple[list[Model], bool]:
    return paginate(session, select(Model).where(Model.tenant_id == tenant), Model.id, page)


def descendants(session: Session, tenant: str, model_id: str, limit: int = 100) -> list[Model]:
    return list(session.scalars(select(Model).where(
        Model.tenant_id == tenant, Model.source_model_id == model_id)
        .order_by(Model.created_at.desc(), Model.id.desc()).limit(limit)))


def origin(session: Session, ckpt: Checkpoint) -> tuple[Job, str]:
    """The job a checkpoint came from, and the task of its training dataset."""
    job = session.get(Job, ckpt.job_id)
    return job, session.get(Dataset, job.training_dataset_id).task


def checkpoint_of(session: Session, model: Model) -> Checkpoint:
    return session.get(Checkpoint, model.checkpoint_id)
