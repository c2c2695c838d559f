"""The hyperparameters a job takes (the server's app/ml/config.py RANGES; a test in the
repository keeps the two lists the same): the CLI names them when one is unknown."""
HYPERPARAMETERS = (
    "epochs", "batch_size", "learning_rate", "max_length", "weight_decay", "warmup_ratio",
    "dropout", "eval_batch_size", "unfreeze_layers", "lora_rank", "lora_alpha", "lora_dropout",
    "image_size", "augment", "hflip", "length_bucketing", "temperature", "alpha",
    "student_layers", "augment_copies", "feature_weight", "prune_ffn", "prune_heads",
    "prune_channels", "processes", "calibrate",
    "target_precision",
    "chunking", "chunk_overlap", "max_chunks",
)
# Validation metrics where lower is better (the others: higher is better).
LOWER_IS_BETTER = ("val_loss",)
