"""A job's training configuration, with every "auto" value resolved to a number the job shows."""
import math
from dataclasses import asdict, dataclass, field
from typing import Any

METHODS = ("full", "head", "partial", "lora", "distill", "prune")

# Defaults per method: a frozen backbone tolerates (and needs) a far larger step than full tuning.
_AUTO: dict[str, dict[str, Any]] = {
    "full": {"epochs": 3, "batch_size": 16, "learning_rate": 5e-5},
    "partial": {"epochs": 3, "batch_size": 16, "learning_rate": 1e-4},
    "lora": {"epochs": 3, "batch_size": 16, "learning_rate": 5e-4},
    "head": {"epochs": 5, "batch_size": 32, "learning_rate": 2e-3},
    # a student trained on all its weights, like full (app.ml.distill); prune: a short retrain
    "distill": {"epochs": 3, "batch_size": 16, "learning_rate": 1e-4},
    "prune": {"epochs": 1, "batch_size": 16, "learning_rate": 5e-5},
}
# Distillation: softmax temperature, the KL term's weight (1 - alpha goes to the labels' CE) and
# the student's depth (None: the base model as it is; N: N of the teacher's text encoder layers);
# augment_copies (text): that many altered copies of each training text (app.ml.distill.
# augment_texts) join the training set, taught by the teacher's logits alone; feature_weight
# (text): the weight of a loss matching the teacher's pooled features (0: logits only).
DISTILL_DEFAULTS: dict[str, Any] = {"temperature": 2.0, "alpha": 0.5, "student_layers": None,
                                    "augment_copies": 0, "feature_weight": 0.0}
# Pruning: the share of each text encoder layer's FFN channels / attention heads removed, or of
# each image network layer's convolution channels.
PRUNE_DEFAULTS: dict[str, Any] = {"prune_ffn": 0.0, "prune_heads": 0.0, "prune_channels": 0.0}
_TEXT_PRUNE, _IMAGE_PRUNE = ("prune_ffn", "prune_heads"), ("prune_channels",)
# Image-only knobs: input size (square), random-resized-crop and horizontal-flip augmentation.
IMAGE_DEFAULTS: dict[str, Any] = {"image_size": 224, "augment": 0, "hflip": 0}
# Calibration (app.ml.calibration): temperature scaling on the validation logits (1) or none (0);
# target_precision (None: no thresholds) learns per-class confidence thresholds for "unsure".
CALIBRATION_DEFAULTS: dict[str, Any] = {"calibrate": 1, "target_precision": None}
# Long texts (app.ml.data.windows): chunking None = chosen from the data (on when most training
# texts overflow max_length), 0 = cut at max_length, 1 = overlapping windows of max_length tokens
# (chunk_overlap shared), at most max_chunks per text, their logits averaged per text.
CHUNKING_DEFAULTS: dict[str, Any] = {"chunking": None, "chunk_overlap": 32, "max_chunks": 8}
_COMMON: dict[str, Any] = {
    "max_length": 128, "weight_decay": 0.01, "warmup_ratio": 0.1, "dropout": 0.1,
    "eval_batch_size": 64, "unfreeze_layers": 2, "lora_rank": 8, "lora_alpha": 16,
    "lora_dropout": 0.1, "length_bucketing": 1,
    # Training processes for the one job (DistributedDataParallel, one per GPU, or gloo on CPU):
    # batch_size stays the global batch, each process takes batch_size / processes of it.
    "processes": 1,
}
# (low, high, integer?) for every knob a user may set.
RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100, True), "batch_size": (1, 1024, True), "learning_rate": (1e-7, 1.0, False),
    "max_length": (8, 512, True), "weight_decay": (0.0, 1.0, False),
    "warmup_ratio": (0.0, 0.5, False), "dropout": (0.0, 0.9, False),
    "eval_batch_size": (1, 4096, True), "unfreeze_layers": (1, 128, True),
    "lora_rank": (1, 256, True), "lora_alpha": (1, 1024, True), "lora_dropout": (0.0, 0.9, False),
    "image_size": (32, 1024, True), "augment": (0, 1, True), "hflip": (0, 1, True),
    "length_bucketing": (0, 1, True), "processes": (1, 64, True),
    "temperature": (0.5, 20.0, False), "alpha": (0.0, 1.0, False), "student_layers": (1, 48, True),
    "augment_copies": (0, 50, True), "feature_weight": (0.0, 100.0, False),
    "prune_ffn": (0.0, 0.95, False), "prune_heads": (0.0, 0.95, False),
    "prune_channels": (0.0, 0.95, False),
    "calibrate": (0, 1, True), "target_precision": (0.5, 0.999, False),
    "chunking": (0, 1, True), "chunk_overlap": (0, 256, True), "max_chunks": (1, 64, True),
}
TEXT_ONLY = ("max_length", "dropout", "length_bucketing", "augment_copies", "feature_weight",
             *CHUNKING_DEFAULTS)
METRICS_HIGHER_IS_BETTER = {"val_macro_f1": True, "val_accuracy": True, "val_loss": False}


# Knobs that only one method uses; the others neither show nor accept them.
_ONLY_FOR = {"unfreeze_layers": "partial", "lora_rank": "lora", "lora_alpha": "lora",
             "lora_dropout": "lora", **{k: "distill" for k in DISTILL_DEFAULTS},
             **{k: "prune" for k in PRUNE_DEFAULTS}}


def default_batch_size(method: str) -> int:
    return _AUTO[method]["batch_size"]


def resolve_hyperparameters(method: str, given: dict[str, Any],
                            task: str = "text-classification",
                            auto_batch_size: bool = False) -> dict[str, Any]:
    """Fill omitted or "auto" values; raise ValueError(name, message) for unknown or out of range.
    With auto_batch_size, batch_size "auto" stays "auto": the worker's pre-flight chooses it
    (app.ml.preflight) before the job trains."""
    base = {**_COMMON, **_AUTO[method], **DISTILL_DEFAULTS, **PRUNE_DEFAULTS,
            **CALIBRATION_DEFAULTS, **CHUNKING_DEFAULTS}
    if task == "image-classification":
        if method == "lora":
            raise ValueError("method", "lora is available for text models only")
        base = {**base, **IMAGE_DEFAULTS, "eval_batch_size": 32}
        # (torchvision heads carry their own dropout; images have no length)
        for name in (*TEXT_ONLY, *_TEXT_PRUNE):
            del base[name]
        if method in ("full", "partial", "distill", "prune"):
            base["learning_rate"] = 1e-3 if method == "partial" else 5e-4
        if "student_layers" in given and given["student_layers"] not in (None, "auto"):
            raise ValueError("student_layers", "student_layers applies to text models only")
    else:
        for name in _IMAGE_PRUNE:
            del base[name]
    resolved = {k: v for k, v in base.items() if _ONLY_FOR.get(k, method) == method}
    for name, value in given.items():
        image = task == "image-classification"
        if name not in RANGES or (name in (*IMAGE_DEFAULTS, *_IMAGE_PRUNE) and not image) or (
                name in (*TEXT_ONLY, *_TEXT_PRUNE) and image):
            raise ValueError(name, f"unknown hyperparameter {name!r} for {task}")
        if _ONLY_FOR.get(name, method) != method:
            raise ValueError(name, f"{name} applies to method {_ONLY_FOR[name]!r} only")
        if value is None or value == "auto":
            if name == "batch_size" and value == "auto" and auto_batch_size:
                resolved[name] = "auto"
            continue
        low, high, integer = RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or (integer and float(value) != int(value)):
            raise ValueError(name, f"{name} must be {'an integer' if integer else 'a number'}")
        if not low <= value <= high:
            raise ValueError(name, f"{name} must be between {low:g} and {high:g}, got {value}")
        # -0.0 is 0.0 (a range that excludes 0 has already refused it)
        resolved[name] = int(value) if integer else float(value) + 0.0
    if "max_length" in resolved and resolved["chunk_overlap"] > resolved["max_length"] // 2:
        if given.get("chunk_overlap") in (None, "auto"):  # the default follows a short max_length
            resolved["chunk_overlap"] = resolved["max_length"] // 2
    if "max_length" in resolved and resolved["chunk_overlap"] > resolved["max_length"] // 2:
        raise ValueError("chunk_overlap", f"chunk_overlap ({resolved['chunk_overlap']}) must be "
                         f"at most half of max_length ({resolved['max_length']})")
    if resolved["batch_size"] != "auto" and resolved["processes"] > resolved["batch_size"]:
        raise ValueError("processes", f"processes ({resolved['processes']}) must not exceed "
                         f"batch_size ({resolved['batch_size']}): each process takes a share of "
                         "every batch")
    if resolved["processes"] > 1 and method in ("distill", "prune"):
        raise ValueError("processes", f"method {method} trains in one process (processes 1)")
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
    # DataLoader worker processes decoding images (None: app.ml.image_loader.default_workers)
    loader_workers: int | None = None

    def hp(self, name: str) -> Any:
        return self.hyperparameters[name]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
