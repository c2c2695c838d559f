"""A text classifier: a transformers encoder, the pooling its checkpoint was trained with, a head.

Exported checkpoints are a transformers model directory of their own class: config.json
(`model_type` "adapt-text-classifier", the encoder's config under `adapt_encoder`, how texts are
read — `adapt_max_length`, `adapt_chunking` — `auto_map` → the shipped modeling_adapt.py,
`custom_pipelines` → the shipped pipeline_adapt.py), model.safetensors (encoder.* and head.* —
this TextClassifier's own state dict), the tokenizer, adapt.json, and a sentence-transformers
layout (modules.json, 1_Pooling/) for the encoder's embeddings.
`AutoModelForSequenceClassification` and `pipeline("text-classification")` load it with
trust_remote_code=True, and refuse without; the pipeline (and `model.predict_texts`) reads long
texts as predict does.
Checkpoints of the old layout (the encoder's own config + head.safetensors) still load here.
"""
import copy
import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

from app.ml import modeling_adapt, sharing
from app.ml.modeling_adapt import (MODEL_TYPE, AdaptTextClassifierConfig, build_encoder, pool,
                                   pool_windows)

log = logging.getLogger(__name__)

ADAPT_FILE = "adapt.json"
HEAD_FILE = "head.safetensors"  # the old layout's head (new checkpoints: in model.safetensors)
WEIGHTS_FILE = "model.safetensors"
# shipped in every text checkpoint, copied as they are (the pipeline is not imported here:
# transformers.pipelines would add a second to every process that loads a model)
SHIPPED = [Path(modeling_adapt.__file__),
           Path(modeling_adapt.__file__).with_name("pipeline_adapt.py")]
AUTO_MAP = {"AutoConfig": "modeling_adapt.AdaptTextClassifierConfig",
            "AutoModel": "modeling_adapt.AdaptEncoderModel",
            "AutoModelForSequenceClassification": "modeling_adapt.AdaptForSequenceClassification"}
# pipeline("text-classification", trust_remote_code=True) builds this one instead of its own
CUSTOM_PIPELINES = {"text-classification": {
    "impl": "pipeline_adapt.AdaptTextClassificationPipeline",
    "pt": ["AutoModelForSequenceClassification"], "type": "text"}}


def detect_pooling(model_dir: Path) -> tuple[str, bool]:
    """(pooling, normalize) as the checkpoint was trained: sentence-transformers records both in
    1_Pooling/config.json and modules.json; plain encoders get mean pooling."""
    pooling, normalize = "mean", False
    pool_cfg = model_dir / "1_Pooling" / "config.json"
    if pool_cfg.is_file():
        cfg = json.loads(pool_cfg.read_text())
        if cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif cfg.get("pooling_mode_max_tokens"):
            pooling = "max"
    modules = model_dir / "modules.json"
    if modules.is_file():
        normalize = any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))
    return pooling, normalize


class TextClassifier(nn.Module):
    """encoder → pooling (→ L2 normalise, when the base model was trained so) → dropout → linear."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, normalize: bool,
                 dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling, self.normalize = pooling, normalize
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        # Normalised embeddings have norm 1: scale them so a head starts from usable logits.
        self.scale = float(encoder.config.hidden_size) ** 0.5 if normalize else 1.0
        self.frozen_encoder = False

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.pooled(out.last_hidden_state, attention_mask)

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The features of the encoder's token states (a shared encoder's, in a fan-out)."""
        feats = pool(hidden, attention_mask, self.pooling)
        if self.normalize:
            feats = nn.functional.normalize(feats, dim=-1) * self.scale
        return feats

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                features: torch.Tensor | None = None,
                doc: torch.Tensor | None = None) -> torch.Tensor:
        """Logits per example; with `doc` (long texts in windows, app.ml.data.window_batches)
        the rows are windows and their logits are averaged per example."""
        if features is not None:  # precomputed by the frozen encoder (see FeatureCache)
            return self.head(self.dropout(features))
        if self.frozen_encoder:
            with torch.no_grad():
                feats = self.features(input_ids, attention_mask)
        else:
            feats = self.features(input_ids, attention_mask)
        logits = self.head(self.dropout(feats))
        return logits if doc is None else pool_windows(logits, doc)

    def train(self, mode: bool = True) -> "TextClassifier":
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout
        return self


def load_encoder(model_dir: str | Path) -> nn.Module:
    try:
        return AutoModel.from_pretrained(str(model_dir), add_pooling_layer=False)
    except TypeError:  # architectures without a pooler don't take the argument
        return AutoModel.from_pretrained(str(model_dir))


def load_tokenizer(model_dir: str | Path):
    """The tokenizer saved in model_dir. Our checkpoints' config names modeling_adapt.py in its
    auto_map, and AutoTokenizer reads the config first: without trust_remote_code=False it asked
    "run the custom code? [y/N]" on a terminal (and waited); the tokenizer needs no code."""
    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)


def encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer blocks: the longest ModuleList in it."""
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError("this architecture has no block list to unfreeze partially")
    return max(lists, key=len)


def apply_method(model: TextClassifier, method: str, hp: dict) -> TextClassifier:
    """Set which weights train: all (full), the head (head), the last N blocks + head (partial),
    or low-rank adapters + head (lora)."""
    if method == "full":
        return model
    model.encoder.requires_grad_(False)
    if method == "head":
        model.frozen_encoder = True
    elif method == "partial":
        blocks = encoder_blocks(model.encoder)
        for block in list(blocks)[-hp["unfreeze_layers"]:]:
            block.requires_grad_(True)
    elif method == "lora":
        # deferred: peft only for lora — its import (~2 s) would slow every other job and the API.
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=hp["lora_rank"], lora_alpha=hp["lora_alpha"],
                         lora_dropout=hp["lora_dropout"], target_modules="all-linear")
        model.encoder = get_peft_model(model.encoder, cfg)
    else:
        raise ValueError(f"unknown method {method!r}")
    return model


def build_classifier(base_dir: str | Path, labels: list[str], method: str, hp: dict) -> TextClassifier:
    """A classifier on the base model's encoder, with the method's weights set to train."""
    pooling, normalize = detect_pooling(Path(base_dir))
    model = TextClassifier(load_encoder(base_dir), len(labels), pooling, normalize, hp["dropout"])
    return apply_method(model, method, hp)


def export(model: TextClassifier, tokenizer, labels: list[str], out_dir: Path, extra: dict) -> None:
    """Write a self-contained checkpoint directory (adapters merged into the encoder weights; a
    lora model's adapter also kept apart, and what a server may share recorded: app.ml.sharing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    shared = sharing.export_info(encoder, extra.get("method", ""), out_dir)
    if hasattr(encoder, "merge_and_unload"):  # peft: export plain weights, not base + adapter
        encoder = copy.deepcopy(encoder).merge_and_unload()
    config = AdaptTextClassifierConfig(
        adapt_encoder=encoder.config.to_dict(), pooling=model.pooling, normalize=model.normalize,
        scale=model.scale,
        calibration_temperature=(extra.get("calibration") or {}).get("temperature", 1.0),
        adapt_max_length=extra.get("max_length", 128),  # predict's default too
        adapt_chunking=extra.get("chunking"),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        architectures=["AdaptForSequenceClassification"])
    config.auto_map, config.custom_pipelines = AUTO_MAP, CUSTOM_PIPELINES
    config.save_pretrained(out_dir)
    weights = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    weights |= {f"head.{k}": v for k, v in model.head.state_dict().items()}
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in weights.items()},
              str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    for source in SHIPPED:
        shutil.copyfile(source, out_dir / source.name)
    tokenizer.save_pretrained(out_dir)
    _sentence_transformers_layout(out_dir, model, encoder.config.hidden_size,
                                  extra.get("max_length", 128))
    meta = {"task": "text-classification", "labels": labels, "pooling": model.pooling,
            "normalize": model.normalize, "scale": model.scale, **extra}
    if shared:
        meta["sharing"] = shared
    (out_dir / ADAPT_FILE).write_text(json.dumps(meta, indent=2))
    (out_dir / "README.md").write_text(_README.format(
        labels=labels, pooling=model.pooling, reading=reading(extra)))


def _sentence_transformers_layout(out_dir: Path, model: TextClassifier, dim: int,
                                  max_length: int) -> None:
    """modules.json + 1_Pooling (+ Normalize): SentenceTransformer(dir, trust_remote_code=True)
    gives the encoder's pooled embeddings (the classifier's features, before the scale)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if model.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (out_dir / "2_Normalize").mkdir(exist_ok=True)
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2))
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    (out_dir / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": model.pooling == "cls",
        "pooling_mode_mean_tokens": model.pooling == "mean",
        "pooling_mode_max_tokens": model.pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (out_dir / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_length, "do_lower_case": False}, indent=2))


def load_exported(ckpt_dir: str | Path, device: str = "cpu") -> tuple[TextClassifier, object, dict]:
    """(model in eval mode, tokenizer, adapt.json) from a directory written by export(), of either
    layout: this one (model_type adapt-text-classifier, one model.safetensors) or the old one (the
    encoder's own directory + head.safetensors)."""
    ckpt_dir = Path(ckpt_dir)
    meta = json.loads((ckpt_dir / ADAPT_FILE).read_text())
    config = json.loads((ckpt_dir / "config.json").read_text())
    if config.get("model_type") == MODEL_TYPE:
        model = TextClassifier(build_encoder(config["adapt_encoder"]), len(meta["labels"]),
                               meta["pooling"], meta["normalize"], 0.0)
        model.load_state_dict(load_file(str(ckpt_dir / WEIGHTS_FILE)))
    else:
        model = TextClassifier(load_encoder(ckpt_dir), len(meta["labels"]), meta["pooling"],
                               meta["normalize"], 0.0)
        model.head.load_state_dict(load_file(str(ckpt_dir / HEAD_FILE)))
    model.scale = meta.get("scale", model.scale)
    return model.to(device).eval(), load_tokenizer(ckpt_dir), meta


def base_model_parameters(model_dir: str | Path) -> int:
    """Parameter count of a model directory, read from its safetensors headers (no weights loaded)."""
    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                piece = st.get_slice(key)
                if piece.get_dtype().startswith(("F", "BF")):  # not int buffers (position_ids)
                    total += _numel(piece.get_shape())
    return total


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def reading(meta: dict) -> str:
    """How a checkpoint (its adapt.json) reads texts, in a sentence for a README."""
    max_length, chunking = meta.get("max_length", 128), meta.get("chunking")
    if not chunking:
        return f"Texts are cut at {max_length} tokens, as the model was trained."
    return (f"Long texts are read as the model was trained: in windows of {max_length} "
            f"tokens, neighbours sharing {chunking['overlap']}, at most {chunking['max_chunks']} "
            "a text (the rest is cut), the windows' logits averaged per text.")


_README = """# A text classifier fine-tuned with adapt

Labels: {labels}. Pooling over tokens: {pooling} (as the base model was trained). {reading}

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

clf = pipeline("text-classification", model=".", trust_remote_code=True)  # this directory
print(clf(["a fine film"], top_k=None))

model = AutoModelForSequenceClassification.from_pretrained(".", trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(".", trust_remote_code=True)
print(model.predict_texts(tokenizer, ["a fine film"]))  # probabilities, one row a text
```

`trust_remote_code=True` runs `modeling_adapt.py` (encoder, pooling, linear head) and
`pipeline_adapt.py` (the pipeline, which reads texts as the service does) from this directory;
without it transformers refuses to load the model rather than guess a head. Both give the
service's calibrated probabilities. Calling the model yourself, read texts as `predict_texts`
does: `modeling_adapt.window_texts` gives the windows and the text each belongs to, and a text's
logits are the mean of its windows'. `SentenceTransformer(".", trust_remote_code=True)` gives
the encoder's embeddings.
"""
