"""Exports: check that the model can be exported, record the request, send it after commit."""
from sqlalchemy.orm import Session

from app.db import after_commit
from app.errors import Conflict
from app.exports import lifecycle, repository
from app.exports.schemas import ExportCreate
from app.ids import new_id
from app.models import ACTIVE_STATUSES, Export, Job, Model
from app.models_api import repository as models
from app.pagination import Page
from app.storage import LocalStorage


def _check_exportable(session: Session, model: Model) -> None:
    """409 unless the model's training has finished: its weights may still change, and its
    validation data (which the export is measured on) must be the job's."""
    job = session.get(Job, model.job_id) if model.job_id else None
    if job is None:
        raise Conflict(f"Model {model.id} has no training job, so no validation data to measure "
                       "an export on.", code="model_not_exportable", param="model")
    if job.status in ACTIVE_STATUSES:
        raise Conflict(f"Model {model.id} is still training (job {job.id} is {job.status}); "
                       "export it once the job has finished.", code="model_not_ready",
                       param="model")


def create(session: Session, tenant: str, model_id: str, req: ExportCreate) -> Export:
    model = models.get(session, tenant, model_id)
    _check_exportable(session, model)
    return lifecycle.enqueue(session, Export(
        id=new_id("exp"), tenant_id=tenant, model_id=model.id, format=req.format,
        quantize=req.quantize))


def get(session: Session, tenant: str, export_id: str, model_id: str | None = None) -> Export:
    return repository.get(session, tenant, export_id, model_id)


def list_page(session: Session, tenant: str, model_id: str,
              page: Page) -> tuple[list[Export], bool]:
    model = models.get(session, tenant, model_id)
    return repository.list_page(session, tenant, model.id, page)


def archive(session: Session, tenant: str, export_id: str) -> Export:
    """The export whose archive is to be downloaded: 409 until it has succeeded."""
    export = get(session, tenant, export_id)
    if export.status != "succeeded":
        raise Conflict(f"Export {export.id} is {export.status}; its archive can be downloaded "
                       "once it has succeeded.", code="export_not_ready")
    return export


def delete(session: Session, storage: LocalStorage, tenant: str, export_id: str) -> Export:
    """Delete the export and, once that has committed, its archive (a worker still building it
    finds the row gone and removes what it stored)."""
    export = get(session, tenant, export_id)
    session.delete(export)
    if export.storage_key:
        after_commit(session, lambda: storage.delete(export.storage_key))
    return export
