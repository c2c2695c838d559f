from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas import NO_NUL, ApiModel, OptionalTimestamp, Timestamp

QualityStatus = Literal["queued", "running", "succeeded", "failed"]


class DatasetQuality(ApiModel):
    """The dataset's data-quality report in brief (GET /v1/datasets/{id}/quality has its rows)."""
    id: str
    status: QualityStatus
    error: dict[str, Any] | None
    # Counts and warnings: examined_rows, total_rows, capped, exact_duplicate_groups,
    # near_duplicate_groups, redundant_rows, validation_split_leak_groups, label_issues,
    # imbalance_ratio, warnings (sentences).
    summary: dict[str, Any] | None
    finished_at: OptionalTimestamp = None


class DatasetOut(ApiModel):
    object: Literal["dataset"] = "dataset"
    id: str
    name: str
    task: str
    format: str
    bytes: int
    sha256: str
    num_examples: int
    labels: list[str]
    # Accepted, but worth a look: e.g. two labels that differ only in look-alike characters
    # ("fresh" and "freѕh" with a Cyrillic s) are two classes.
    warnings: list[str] = Field(default_factory=list)
    class_counts: dict[str, int]
    text_column: str
    label_column: str
    status: str
    # Computed by a worker after the upload (null when none was asked for: ADAPT_QUALITY_REPORTS
    # off, or a dataset uploaded before reports existed). A failed report leaves the dataset ready.
    quality: DatasetQuality | None = None
    created_at: Timestamp

    @field_validator("warnings", mode="before")
    @classmethod
    def _none_is_empty(cls, value: list[str] | None) -> list[str]:
        return value or []


class QualityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # Another dataset of the same task (e.g. the validation dataset of a job): the report then
    # lists the duplicates across the two. Omitted: the dataset's own report, computed again.
    against: str | None = Field(default=None, max_length=40, pattern=NO_NUL)


class QualityReportOut(ApiModel):
    object: Literal["quality_report"] = "quality_report"
    id: str
    dataset: str = Field(validation_alias="dataset_id")
    against: str | None = Field(validation_alias="against_dataset_id")
    status: QualityStatus
    error: dict[str, Any] | None
    summary: dict[str, Any] | None
    # Alone: examined, duplicates (exact, near, validation_split_leaks), class_balance, lengths,
    # label_issues, base_model. Against another dataset: examined, threshold, exact_pairs,
    # near_pairs, against_rows_with_duplicates, conflicting_labels, pairs.
    details: dict[str, Any] | None
    created_at: Timestamp
    started_at: OptionalTimestamp = None
    finished_at: OptionalTimestamp = None
