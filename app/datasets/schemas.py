from typing import Literal

from app.schemas import ApiModel, Timestamp


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
    class_counts: dict[str, int]
    text_column: str
    label_column: str
    status: str
    created_at: Timestamp
