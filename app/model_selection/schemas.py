from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import NO_NUL, OptionalTimestamp, Timestamp, bounded

SelectionStatus = Literal["queued", "running", "succeeded", "failed"]
CandidateId = Annotated[str, Field(min_length=1, max_length=255, pattern=NO_NUL)]
MAX_CANDIDATES = 16


class SelectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    dataset: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    # base model ids (GET /v1/base-models), or "all": every base model of the dataset's task
    candidates: Annotated[list[CandidateId], Field(min_length=1, max_length=MAX_CANDIDATES)] | \
        Literal["all"] = Field(default="all", json_schema_extra={
            "examples": [["minilm-l6-v2", "mpnet-base-v2"], "all"]})
    # examples scored (a seeded random subset of larger datasets): LogME and the k-NN probe
    # settle long before this, and every scored example's features are cached for a `head` job
    max_examples: bounded(10, 100_000) = 5000


class CandidateScore(BaseModel):
    base_model: str
    rank: int                      # 1 = the highest LogME
    logme: float                   # evidence per example, higher transfers better
    knn_accuracy: float            # leave-one-out 5-NN accuracy on the features (cosine)
    feature_dim: int
    examples: int
    features_cached: int           # examples whose features the shared cache already had
    # features: the frozen model's forward passes (0 for cache hits); scoring: LogME + k-NN
    seconds: dict[str, float]


class SelectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)
    object: Literal["model_selection"] = "model_selection"
    id: str
    dataset: str = Field(validation_alias="dataset_id")
    status: SelectionStatus
    candidates: list[str]
    results: list[CandidateScore] | None = None  # best first
    recommended: str | None = None               # results[0].base_model once succeeded
    error: dict[str, Any] | None = None
    created_at: Timestamp
    started_at: OptionalTimestamp = None
    finished_at: OptionalTimestamp = None
