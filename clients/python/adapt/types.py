"""The API's resources as typed objects. Unknown fields the service adds later are kept (extra)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import BaseModel, ConfigDict, PrivateAttr

if TYPE_CHECKING:
    from adapt.client import Client

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=False, protected_namespaces=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, as the API sent it."""
        return self.model_dump(mode="json")


class Dataset(Resource):
    object: str = "dataset"
    id: str
    name: str
    task: str
    format: str
    bytes: int
    sha256: str
    num_examples: int
    labels: list[str]
    class_counts: dict[str, int]
    # Accepted, but worth a look (e.g. labels that differ only in look-alike characters).
    warnings: list[str] = []
    status: str
    created_at: datetime
    text_column: str | None = None
    label_column: str | None = None


class BaseModelInfo(Resource):
    object: str = "base_model"
    id: str
    task: str
    source: str
    parameters: int | None = None
    license: str | None = None
    description: str = ""


class JobProgress(Resource):
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    eta_seconds: float | None = None
    samples_per_second: float | None = None
    train_loss: float | None = None
    queue: dict[str, Any] | None = None  # while queued: {"position": n, "workers": k}


class JobError(Resource):
    code: str
    message: str


class Job(Resource):
    object: str = "job"
    id: str
    status: str
    base_model: str
    training_dataset: str
    validation_dataset: str | None = None
    validation_split: float
    method: str
    hyperparameters: dict[str, Any] = {}
    early_stopping: dict[str, Any] | None = None
    select_checkpoint_by: str
    seed: int
    suffix: str | None = None
    progress: JobProgress | None = None
    metrics: dict[str, Any] | None = None
    error: JobError | None = None
    model: str | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metadata: dict[str, str] = {}
    # while queued: {"position": n (1 = next), "workers": k (taking jobs now)}; None otherwise
    queue: dict[str, Any] | None = None
    _client: Client | None = PrivateAttr(default=None)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def _bound(self) -> Client:
        if self._client is None:
            raise RuntimeError("this Job is not bound to a Client")
        return self._client

    def refresh(self) -> Job:
        """The job as it is now."""
        return self._bound().jobs.get(self.id)

    def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> Job:
        """Block until the job has finished; the final job."""
        return self._bound().jobs.wait(self.id, timeout=timeout, poll_interval=poll_interval)

    def stream(self, **kwargs: Any) -> Iterator[JobEvent | JobProgress]:
        """Its events, live (see `JobsResource.stream`)."""
        return self._bound().jobs.stream(self.id, **kwargs)

    def cancel(self) -> Job:
        return self._bound().jobs.cancel(self.id)


class JobEvent(Resource):
    id: int
    created_at: datetime
    level: str
    type: str
    message: str
    data: dict[str, Any] | None = None


class Metric(Resource):
    step: int
    epoch: float
    name: str
    value: float


class Checkpoint(Resource):
    object: str = "checkpoint"
    id: str
    job: str | None = None
    step: int
    epoch: int
    metrics: dict[str, Any] = {}
    is_best: bool
    bytes: int
    created_at: datetime | None = None


class Model(Resource):
    object: str = "model"
    id: str
    name: str
    task: str
    labels: list[str]
    base_model: str
    job: str | None = None
    checkpoint: str
    metrics: dict[str, Any] = {}
    created_at: datetime


class ClassScores(Resource):
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(Resource):
    labels: list[str]
    matrix: list[list[int]]


class Evaluation(Resource):
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion_matrix: ConfusionMatrix


class Scored(Resource):
    label: str
    score: float


class Prediction(Resource):
    label: str
    score: float
    top: list[Scored] = []


class PredictionResult(Resource):
    object: str = "prediction"
    model: str
    predictions: list[Prediction]


class ApiKey(Resource):
    object: str = "api_key"
    id: str
    tenant: str
    name: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None = None


class CreatedApiKey(ApiKey):
    key: str  # the secret, shown once
