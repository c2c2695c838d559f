from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import ApiModel, OptionalTimestamp, Timestamp

ExportStatus = Literal["queued", "running", "succeeded", "failed"]


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: Literal["onnx"]
    # int8: weights and activations quantised by onnxruntime (dynamic for text, static with
    # calibration images for image models); fp16: weights and compute in half precision.
    quantize: Literal["int8", "fp16"] | None = None


class ExportOut(ApiModel):
    object: Literal["export"] = "export"
    id: str
    model: str = Field(validation_alias="model_id")
    status: ExportStatus
    format: str
    quantize: str | None
    size_bytes: int | None
    sha256: str | None
    error: dict[str, Any] | None
    # {"original": {...}, "export": {...}, "delta": {...}}: accuracy, macro_f1, latency_ms_b1,
    # latency_ms_b32, size_bytes on the model's validation data, measured on the worker's CPU.
    evaluation: dict[str, Any] | None
    created_at: Timestamp
    finished_at: OptionalTimestamp = None
