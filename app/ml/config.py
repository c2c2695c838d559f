"""A job's training configuration, with every "auto" value resolved to a number the job shows."""
import math
from dataclasses import asdict, dataclass, field
from typing import Any

METHODS = ("full", "head", "partial", "lora")

# Defaults per method: a frozen backbone tolerates (and needs) a far larger step than full tuning.
_AUTO: dict[str, dict[str, Any]] = {
    "full": {"epochs": 3, "batch_size": 16, "learning_rate": 5e-5},
    "partial": {"epochs": 3, "batch_size": 16, "learning_rate": 1e-4},
    "lora": {"epochs": 3, "batch_size": 16, "learning_rate": 5e-4},
    "head": {"epochs": 5, "batch_size": 32, "learning_rate": 2e-3},
}
# Image-only knobs: input size (square), random-resized-crop and horizontal-flip augmentation.
IMAGE_DEFAULTS: dict[str, Any] = {"image_size": 224, "augment": 0, "hflip": 0}
_COMMON: dict[str, Any] = {
    "max_length": 128, "weight_decay": 0.01, "warmup_ratio": 0.1, "dropout": 0.1,
    "eval_batch_size": 64, "unfreeze_layers": 2, "lora_rank": 8, "lora_alpha": 16,
    "lora_dropout": 0.1, "length_bucketing": 1,
}
# (low, high, integer?) for every knob a user may set.
RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100, True), "batch_size": (1, 1024, True), "learning_rate": (1e-7, 1.0, False),
    "max_length": (8, 512, True), "weight_decay": (0.0, 1.0, False),
    "warmup_ratio": (0.0, 0.5, False), "dropout": (0.0, 0.9, False),
    "eval_batch_size": (1, 4096, True), "unfreeze_layers": (1, 128, True),
    "lora_rank": (1, 256, True), "lora_alpha": (1, 1024, True), "lora_dropout": (0.0, 0.9, False),
    "image_size": (32, 1024, True), "augment": (0, 1, True), "hflip": (0, 1, True),
    "length_bucketing": (0, 1, True),
}
METRICS_HIGHER_IS_BETTER = {"val_macro_f1": True, "val_accuracy": True, "val_loss": False}


# Knobs that only one method uses; the others neither show nor accept them.
_ONLY_FOR = {"unfreeze_layers": "partial", "lora_rank": "lora", "lora_alpha": "lora",
             "lora_dropout": "lora"}


def resolve_hyperparameters(method: str, given: dict[str, Any],
                            task: str = "text-classification") -> dict[str, Any]:
    """Fill omitted or "auto" values; raise ValueError(name, message) for unknown or out of range."""
    base = {**_COMMON, **_AUTO[method]}
    if task == "image-classification":
        if method == "lora":
            raise ValueError("method", "lora is available for text models only")
        base = {**base, **IMAGE_DEFAULTS, "eval_batch_size": 32}
        # (torchvision heads carry their own dropout; images have no length)
        del base["max_length"], base["dropout"], base["length_bucketing"]
        if method in ("full", "partial"):
            base["learning_rate"] = 1e-3 if method == "partial" else 5e-4
    resolved = {k: v for k, v in base.items() if _ONLY_FOR.get(k, method) == method}
    for name, value in given.items():
        image = task == "image-classification"
        if name not in RANGES or (name in IMAGE_DEFAULTS and not image) or (
                name in ("max_length", "dropout", "length_bucketing") and image):
            raise ValueError(name, f"unknown hyperparameter {name!r} for {task}")
        if _ONLY_FOR.get(name, method) != method:
            raise ValueError(name, f"{name} applies to method {_ONLY_FOR[name]!r} only")
        if value is None or value == "auto":
            continue
        low, high, integer = RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or (integer and float(value) != int(value)):
            raise ValueError(name, f"{name} must be {'an integer' if integer else 'a number'}")
        if not low <= value <= high:
            raise ValueError(name, f"{name} must be between {low:g} and {high:g}, got {value}")
        # -0.0 is 0.0 (a range that excludes 0 has already refused it)
        resolved[name] = int(value) if integer else float(value) + 0.0
    return resolved


@dataclass
class TrainConfig:
    method: str
    hyperparameters: dict[str, Any]
    seed: int = 42
    select_checkpoint_by: str = "val_macro_f1"
    early_stopping: dict[str, Any] | None = None
    device: str = "cpu"
    labels: list[str] = field(default_factory=list)
    precision: str = "auto"  # "auto" | "fp32" | "bf16": see app.ml.precision

    def hp(self, name: str) -> Any:
        return self.hyperparameters[name]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
