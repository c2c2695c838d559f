from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import NO_NUL, ApiModel, Integer, Timestamp


class ModelOut(ApiModel):
    object: Literal["model"] = "model"
    id: str
    name: str
    task: str
    labels: list[str]
    base_model: str
    job: str | None = Field(validation_alias="job_id")
    checkpoint: str = Field(validation_alias="checkpoint_id")
    metrics: dict[str, Any]
    created_at: Timestamp


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    checkpoint: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    name: str | None = Field(default=None, min_length=1, max_length=255, pattern=NO_NUL)


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    image_base64: str = Field(max_length=64 << 20)


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    # Texts for text models, {"image_base64": …} for image models. The upper bound is a setting
    # (ADAPT_MAX_PREDICT_INPUTS); the service checks it.
    inputs: list[str | ImageInput] = Field(min_length=1)
    top_k: Integer | None = Field(default=None, ge=1, le=1000)


class Scored(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str
    score: float
    top: list[Scored]


class PredictOut(BaseModel):
    object: Literal["prediction"] = "prediction"
    model: str
    predictions: list[Prediction]


class Evaluation(BaseModel):
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: dict[str, Any]
