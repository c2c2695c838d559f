from typing import Literal

from pydantic import Field, field_validator

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
    # Accepted, but worth a look: e.g. two labels that differ only in look-alike characters
    # ("fresh" and "freѕh" with a Cyrillic s) are two classes.
    warnings: list[str] = Field(default_factory=list)
    class_counts: dict[str, int]
    text_column: str
    label_column: str
    status: str
    created_at: Timestamp

    @field_validator("warnings", mode="before")
    @classmethod
    def _none_is_empty(cls, value: list[str] | None) -> list[str]:
        return value or []
