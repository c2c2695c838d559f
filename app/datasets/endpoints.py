from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from app.keys.auth import Tenant
from app.datasets import repository, service
from app.datasets.schemas import DatasetOut, QualityCreate, QualityReportOut
from app.db import DbSession
from app.deps import SettingsDep, StorageDep
from app.idempotency import IdempotencyDep, request_hash
from app.pagination import Page, page_params
from app.ratelimit import rate_limit
from app.schemas import ERROR_RESPONSES, NO_NUL, ListOf, links

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=DatasetOut,
             responses=links("dataset_id", "get_dataset", "delete_dataset",
                             "get_dataset_quality", "check_dataset_quality"),
             dependencies=[rate_limit("upload", "rate_limit_uploads_per_minute")])
def create_dataset(
    session: DbSession, storage: StorageDep, settings: SettingsDep, tenant: Tenant,
    idem: IdempotencyDep,
    file: Annotated[UploadFile, File(description="CSV (header row) or JSONL, UTF-8")],
    name: Annotated[str | None, Form(max_length=255)] = None,
    task: Annotated[Literal["text-classification", "image-classification"] | None,
                    Form()] = None,
    text_column: Annotated[str, Form(min_length=1, max_length=255)] = "text",
    label_column: Annotated[str, Form(min_length=1, max_length=255)] = "label",
):
    """Upload a labelled dataset; it is hashed and validated before the response."""
    staged = service.stage(storage, settings, file.file)
    try:
        digest = request_hash("dataset", staged.sha256, file.filename, name, task, text_column,
                              label_column)
        return idem.run(session, tenant, digest, lambda: DatasetOut.model_validate(
            service.create(session, storage, settings, tenant, staged=staged,
                           filename=file.filename or "", name=name, task=task,
                           text_column=text_column, label_column=label_column),
        ).model_dump(mode="json"))
    finally:
        staged.discard()


@router.get("", response_model=ListOf[DatasetOut])
def list_datasets(session: DbSession, tenant: Tenant, page: Annotated[Page, Depends(page_params)]):
    rows, has_more = repository.list_page(session, tenant, page)
    return ListOf[DatasetOut](data=rows, has_more=has_more)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: DbSession, tenant: Tenant):
    return service.get(session, tenant, dataset_id)


@router.delete("/{dataset_id}", response_model=DatasetOut)
def delete_dataset(dataset_id: str, session: DbSession, storage: StorageDep, tenant: Tenant):
    """Delete a dataset (409 while a queued or running job uses it)."""
    return service.delete(session, storage, tenant, dataset_id)


@router.post("/{dataset_id}/quality", status_code=202, response_model=QualityReportOut)
def check_dataset_quality(dataset_id: str, session: DbSession, tenant: Tenant,
                          idem: IdempotencyDep, req: QualityCreate | None = None):
    """Queue a data-quality report (a worker computes it): on the dataset alone, or with
    `against`, on its duplicates across another dataset (e.g. its validation data). One already
    queued or running is answered instead of a second."""
    req = req or QualityCreate()
    return idem.run(session, tenant, request_hash("quality", dataset_id, req.model_dump()),
                    lambda: QualityReportOut.model_validate(service.request_quality(
                        session, tenant, dataset_id, req.against)).model_dump(mode="json"),
                    status_code=202)


@router.get("/{dataset_id}/quality", response_model=QualityReportOut)
def get_dataset_quality(dataset_id: str, session: DbSession, tenant: Tenant,
                        against: Annotated[str | None, Query(max_length=40,
                                                             pattern=NO_NUL)] = None):
    """The dataset's newest quality report with the rows it names (alone, or `against` another
    dataset)."""
    return service.quality_report(session, tenant, dataset_id, against)
