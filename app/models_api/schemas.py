from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import NO_NUL, ApiModel, Timestamp, bounded


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
    source_model: str | None = Field(default=None, validation_alias="source_model_id",
                                     description="the model this one was distilled (teacher) "
                                                 "or pruned from")
    compression: dict[str, Any] | None = Field(
        default=None, description="distilled or pruned models: kind, params, size_bytes, "
        "latency_ms_b1, accuracy, and the same figures of the source model under `source`")
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
    top_k: bounded(1, 1000) | None = None
    # true: each prediction also carries its explanation (as POST /explain answers).
    explain: bool = False
    target: str | None = Field(default=None, max_length=1000)
    steps: bounded(1) | None = None
    # Below this calibrated score a prediction answers "label": null, "unsure": true; null: the
    # thresholds the model learned (hyperparameter target_precision), if any.
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class PredictManyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    # Models of one task on one base model, each at most once; at most ADAPT_PREDICT_MAX_MODELS
    # (the document says its default; the service checks the setting).
    models: list[str] = Field(min_length=1, json_schema_extra={"uniqueItems": True,
                                                               "maxItems": 32})
    # Texts for text models, {"image_base64": …} for image models (or multipart `files`).
    inputs: list[str | ImageInput] = Field(min_length=1)
    top_k: bounded(1, 1000) | None = None
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class ExplainIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    # At most ADAPT_EXPLAIN_MAX_INPUTS inputs; steps at most ADAPT_EXPLAIN_MAX_STEPS (checked by
    # the service, a 422 naming the cap beyond it).
    inputs: list[str | ImageInput] = Field(min_length=1)
    # The label to explain for every input; null: each input's predicted label.
    target: str | None = Field(default=None, max_length=1000)
    steps: bounded(1) | None = None
    top_k: bounded(1, 1000) | None = None


class Scored(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    label: str | None = Field(description="the predicted label; null when unsure")
    score: float = Field(description="the top label's calibrated probability (temperature "
                                     "scaling fitted on the validation data)")
    unsure: bool = Field(default=False, description="the score is below the request's "
                         "min_confidence, or below the threshold the model learned for the label")
    top: list[Scored]


class WordScore(BaseModel):
    word: str
    start: int  # character offsets in the input text: text[start:end] == word
    end: int
    score: float


class Heatmap(BaseModel):
    """An 8-bit greyscale PNG at the input image's resolution: 255 where the evidence for the
    target label is strongest, 0 where there is none."""
    width: int
    height: int
    format: Literal["png"] = "png"
    png_base64: str


class Explained(Prediction):
    target: str
    words: list[WordScore] | None = None   # text models
    truncated: bool | None = None          # text: words past what the model reads (scored 0)
    heatmap: Heatmap | None = None         # image models


class PredictOut(BaseModel):
    object: Literal["prediction"] = "prediction"
    model: str
    predictions: list[Explained | Prediction]


class PredictManyOut(BaseModel):
    object: Literal["prediction_list"] = "prediction_list"
    data: list[PredictOut] = Field(description="one per requested model, in the request's order")


class ExplainOut(BaseModel):
    object: Literal["explanation"] = "explanation"
    model: str
    method: Literal["integrated_gradients"]
    steps: int  # integrated-gradients steps
    explanations: list[Explained]


class Evaluation(BaseModel):
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: dict[str, Any]
    calibration: dict[str, Any] | None = Field(
        default=None, description="temperature scaling fitted on the validation data: "
        "temperature, ece_before, ece_after (cross-fitted), and per-label thresholds when the "
        "job set target_precision")
    data: dict[str, Any] | None = Field(
        default=None, description="text models: examples longer than max_length (truncated, "
        "or split into windows when chunking) and whether chunking was used")
