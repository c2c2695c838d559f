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


class DatasetQuality(Resource):
    """A dataset's data-quality report in brief: `summary` counts duplicates, label issues and
    imbalance, with `warnings` as sentences (Datasets.quality() has the rows it names)."""
    id: str
    status: str
    error: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class QualityReport(Resource):
    """A data-quality report: on the dataset alone (`against` None: duplicates, validation-split
    leaks, class balance, lengths, label issues) or on its duplicates across another dataset.
    `details` lists the rows (their `line` in a CSV/JSONL file, or `member` in a ZIP)."""
    object: str = "quality_report"
    id: str
    dataset: str
    against: str | None = None
    status: str
    error: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


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
    # Computed by a worker after the upload; None when none was asked for.
    quality: DatasetQuality | None = None
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
    teacher: str | None = None        # method distill: the teacher model
    transfer_dataset: str | None = None  # method distill: texts the teacher labels for it
    source_model: str | None = None   # method prune: the model pruned
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metadata: dict[str, str] = {}
    # where it may run: {"device": "auto"|"cpu"|"gpu", "gpus": n}
    resources: dict[str, Any] = {"device": "auto", "gpus": 0}
    # while queued: {"position": n (1 = next), "workers": k (taking jobs now)}; None otherwise
    queue: dict[str, Any] | None = None
    dry_run: bool = False  # a pre-flight only: no model
    # the pre-flight's figures (dry runs; batch_size "auto"): peak_memory_bytes, max_batch_size,
    # seconds_per_epoch, seconds_total, …
    preflight: dict[str, Any] | None = None
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
    # distilled or pruned: the model it derives from, and params, size_bytes, latency_ms_b1,
    # accuracy beside the source's (under "source") and the deltas (under "delta")
    source_model: str | None = None
    compression: dict[str, Any] | None = None
    created_at: datetime


class Export(Resource):
    """A model exported to ONNX (optionally int8 or fp16). `evaluation` sets the export beside
    the original on the model's validation data: {"original": {...}, "export": {...},
    "delta": {...}} with accuracy, macro_f1, latency_ms_b1, latency_ms_b32 and size_bytes."""
    object: str = "export"
    id: str
    model: str
    status: str
    format: str
    quantize: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    error: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class CandidateScore(Resource):
    """One base model's transferability to the dataset: `logme` (evidence per example, higher is
    better), `knn_accuracy` (leave-one-out 5-NN on its features), `rank` (1 = best LogME), and
    `seconds` {"features", "scoring", "total"}."""
    base_model: str
    rank: int
    logme: float
    knn_accuracy: float
    feature_dim: int
    examples: int
    features_cached: int
    seconds: dict[str, float]


class ModelSelection(Resource):
    """Base models ranked for a dataset before training (POST /v1/model-selection); `results`
    best first once `status` is succeeded, `recommended` the best one's id."""
    object: str = "model_selection"
    id: str
    dataset: str
    status: str
    candidates: list[str]
    results: list[CandidateScore] | None = None
    recommended: str | None = None
    error: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


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
    # temperature scaling on the validation data: temperature, ece_before, ece_after, thresholds
    calibration: dict[str, Any] | None = None
    # text models: texts longer than max_length, truncated_examples, chunking
    data: dict[str, Any] | None = None


class Scored(Resource):
    label: str
    score: float


class Prediction(Resource):
    label: str | None          # None when unsure
    score: float               # the top label's calibrated probability
    unsure: bool = False       # below min_confidence or the model's learned threshold
    top: list[Scored] = []


class WordScore(Resource):
    """One word of an explained text: text[start:end] == word; score > 0 pushes toward the
    target label, < 0 away from it."""
    word: str
    start: int
    end: int
    score: float


class Heatmap(Resource):
    """An 8-bit greyscale PNG at the input image's resolution (255: the strongest evidence)."""
    width: int
    height: int
    format: str = "png"
    png_base64: str

    def png(self) -> bytes:
        """The PNG file's bytes."""
        import base64

        return base64.b64decode(self.png_base64)


class Explained(Prediction):
    """A prediction with its attributions toward `target`: `words` for texts, `heatmap` for
    images."""
    target: str
    words: list[WordScore] | None = None
    truncated: bool | None = None
    heatmap: Heatmap | None = None


class PredictionResult(Resource):
    object: str = "prediction"
    model: str
    predictions: list[Explained | Prediction]


class PredictionList(Resource):
    """A fan-out's answers (POST /v1/predict): one PredictionResult per model, in the
    request's order."""
    object: str = "prediction_list"
    data: list[PredictionResult]


class ExplanationResult(Resource):
    object: str = "explanation"
    model: str
    method: str
    steps: int | None = None
    explanations: list[Explained]


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
