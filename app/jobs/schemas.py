import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.schemas import NO_NUL, ApiModel, Integer, OptionalTimestamp, Stored, Timestamp

SelectMetric = Literal["val_macro_f1", "val_accuracy", "val_loss"]


def _finite(value: Any) -> Any:
    """NaN and ±Infinity (which JSON parsers accept) are refused before any range check."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


HyperValue = Annotated[int | float | Literal["auto"] | None, BeforeValidator(_finite)]


class EarlyStoppingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    metric: SelectMetric = "val_macro_f1"
    patience: Integer = Field(default=2, ge=1, le=100)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    base_model: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    training_dataset: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    validation_dataset: str | None = Field(default=None, max_length=64, pattern=NO_NUL)
    # Share of the training set held out for validation when no validation_dataset is given.
    validation_split: float = Field(default=0.1, gt=0.0, le=0.5)
    method: Literal["full", "head", "partial", "lora"] = "full"
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict, max_length=32)
    early_stopping: EarlyStoppingIn | None = None
    select_checkpoint_by: SelectMetric = "val_macro_f1"
    seed: Integer = Field(default=42, ge=0, le=2**31 - 1)
    suffix: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    metadata: dict[Stored, Stored] = Field(default_factory=dict, max_length=16)


class QueueOut(BaseModel):
    position: int = Field(description="1 = next to start: the queued jobs of every tenant ahead "
                                      "of this one (by when they were queued), plus one")
    workers: int = Field(description="worker processes taking jobs now (heard from within the "
                                     "last few seconds)")


class JobOut(ApiModel):
    object: Literal["job"] = "job"
    id: str
    status: str
    base_model: str
    training_dataset: str = Field(validation_alias="training_dataset_id")
    validation_dataset: str | None = Field(validation_alias="validation_dataset_id")
    validation_split: float
    method: str
    hyperparameters: dict[str, Any]
    early_stopping: dict[str, Any] | None
    select_checkpoint_by: str
    seed: int
    suffix: str | None
    progress: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error: dict[str, Any] | None
    model: str | None = Field(validation_alias="model_id")
    attempts: int
    created_at: Timestamp
    started_at: OptionalTimestamp
    finished_at: OptionalTimestamp
    metadata: dict[str, str] = Field(validation_alias="user_metadata")
    queue: QueueOut | None = Field(default=None, description="while queued: its place in the "
                                   "queue and how many workers take jobs; null otherwise")


class EventOut(ApiModel):
    id: int = Field(validation_alias="seq",
                    description="The event's number within its job: 1, 2, 3…")
    created_at: Timestamp
    level: str
    type: str
    message: str
    data: dict[str, Any] | None


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventOut]


class MetricOut(ApiModel):
    step: int
    epoch: float
    name: str
    value: float


class MetricList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MetricOut]


class CheckpointOut(ApiModel):
    object: Literal["checkpoint"] = "checkpoint"
    id: str
    job: str = Field(validation_alias="job_id")
    step: int
    epoch: int
    metrics: dict[str, Any]
    is_best: bool
    bytes: int
    created_at: Timestamp


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointOut]
