import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.ml.config import RANGES
from app.schemas import NO_NUL, ApiModel, Integer, OptionalTimestamp, Stored, Timestamp, bounded

HYPERPARAMETERS_DOC = (
    "Omitted or \"auto\": the method's default (batch_size \"auto\": the largest that fits, "
    "chosen by a pre-flight on the worker; chunking null/\"auto\": on when most training "
    "texts overflow max_length). Out of range or unknown: 422. Names and ranges: " + "; ".join(
        f"{name} {low:g}..{high:g}{' (integer)' if integer else ''}"
        for name, (low, high, integer) in RANGES.items()) + ".")
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


class ResourcesIn(BaseModel):
    """Where the job may run. device "auto": any worker (on its GPU when it has one); "cpu": a CPU
    worker; "gpu": a GPU worker holding at least `gpus` GPUs (default 1)."""
    model_config = ConfigDict(extra="forbid", strict=True)
    device: Literal["auto", "cpu", "gpu"] = "auto"
    gpus: bounded(0, 64) | None = None

    @model_validator(mode="after")
    def _defaults(self) -> "ResourcesIn":
        if self.device == "auto" and self.gpus:
            self.device = "gpu"  # asking for GPUs is asking for a GPU worker
        if self.gpus is None:
            self.gpus = 1 if self.device == "gpu" else 0
        return self

    def inconsistency(self) -> str | None:
        """What is wrong with the device and GPU count together (the service answers it with a
        422 once the ids are known to exist, as it does for hyperparameters: a JSON schema
        cannot relate two fields)."""
        if self.device == "cpu" and self.gpus:
            return 'device "cpu" takes no GPUs: ask for device "gpu"'
        if self.device == "gpu" and self.gpus == 0:
            return 'device "gpu" needs gpus >= 1 (or device "cpu")'
        return None


RUN_ANYWHERE = {"device": "auto", "gpus": 0}


def _resources(value: Any) -> Any:
    """Jobs made before resources existed ran anywhere."""
    return RUN_ANYWHERE if value is None else value


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    base_model: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    training_dataset: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    validation_dataset: str | None = Field(default=None, max_length=64, pattern=NO_NUL)
    # Share of the training set held out for validation when no validation_dataset is given.
    validation_split: float = Field(default=0.1, gt=0.0, le=0.5)
    method: Literal["full", "head", "partial", "lora", "distill"] = "full"
    # method distill: the fine-tuned model (mdl_…) whose logits the student learns from
    teacher: str | None = Field(default=None, min_length=1, max_length=64, pattern=NO_NUL)
    transfer_dataset: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=NO_NUL, description=(
            "method distill, text: a dataset (ds_…) of more texts of the same kind, unlabelled "
            "for this purpose: the teacher labels each one and the student learns from its "
            "logits alone (the dataset's own labels are not read). Texts that are also in the "
            "training or validation examples are left out."))
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict, max_length=32,
                                                   description=HYPERPARAMETERS_DOC)
    early_stopping: EarlyStoppingIn | None = None
    select_checkpoint_by: SelectMetric = "val_macro_f1"
    seed: Integer = Field(default=42, ge=0, le=2**31 - 1)
    suffix: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    # additionalProperties false: a key the pattern refuses is schema-invalid too
    metadata: dict[Stored, Stored] = Field(default_factory=dict, max_length=16, json_schema_extra={
        "additionalProperties": False})
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    dry_run: bool = Field(default=False, description=(
        "true: validate everything, then let a worker run a pre-flight instead of training: a "
        "few real steps on its device; the job succeeds with `preflight` (peak memory, the "
        "largest batch size that fits, estimated seconds per epoch and in total) and no model. "
        "A dry run does not count against the active-jobs cap."))


class PruneTarget(BaseModel):
    """The share to remove: of each text encoder layer's FFN channels and attention heads (at
    least one of them above 0), or of each image network layer's convolution channels."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    ffn: float = Field(default=0.0, ge=0.0, lt=1.0,
                       description="FFN (intermediate) channels, 0 <= ffn < 1")
    heads: float = Field(default=0.0, ge=0.0, lt=1.0,
                         description="attention heads (whole heads, the same number in every "
                                     "layer), 0 <= heads < 1")
    channels: float = Field(default=0.0, ge=0.0, lt=1.0,
                            description="image models: convolution channels, 0 < channels < 1")


class PruneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    target: PruneTarget
    retrain_epochs: Integer = Field(default=1, ge=1, le=20)
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict, max_length=32)
    suffix: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    # additionalProperties false: a key the pattern refuses is schema-invalid too
    metadata: dict[Stored, Stored] = Field(default_factory=dict, max_length=16, json_schema_extra={
        "additionalProperties": False})


class QueueOut(BaseModel):
    position: int = Field(description="1 = next to start: the queued jobs of every tenant ahead "
                                      "of this one (by when they were queued), plus one")
    workers: int = Field(description="worker processes that can take this job (its device "
                                     "class and GPUs; any for device auto), heard from within "
                                     "the last few seconds")


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
    teacher: str | None = Field(default=None, description="method distill: the teacher model")
    transfer_dataset: str | None = Field(
        default=None, validation_alias="transfer_dataset_id",
        description="method distill: the dataset whose texts the teacher labels for the student")
    source_model: str | None = Field(default=None,
                                     description="method prune: the model being pruned")
    attempts: int
    created_at: Timestamp
    started_at: OptionalTimestamp
    finished_at: OptionalTimestamp
    metadata: dict[str, str] = Field(validation_alias="user_metadata")
    resources: Annotated[dict[str, Any], BeforeValidator(_resources)] = Field(
        default_factory=lambda: dict(RUN_ANYWHERE),
        description='where it may run: {"device": "auto"|"cpu"|"gpu", "gpus": n}')
    queue: QueueOut | None = Field(default=None, description="while queued: its place in the "
                                   "queue and how many workers take jobs; null otherwise")
    dry_run: bool = Field(default=False, description="a pre-flight only: no model is made")
    preflight: dict[str, Any] | None = Field(default=None, description=(
        "what the pre-flight measured (dry runs, and real jobs with batch_size \"auto\"): "
        "peak_memory_bytes, max_batch_size, memory_budget_bytes, seconds_per_epoch, "
        "seconds_total, setup_seconds, device"))


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
