"""A text classifier: a transformers encoder, the pooling its checkpoint was trained with, a head.

Exported checkpoints are a plain transformers directory (config.json, model.safetensors, tokenizer)
plus head.safetensors and adapt.json, so `AutoModel.from_pretrained(dir)` loads the encoder as is.
"""
import copy
import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

log = logging.getLogger(__name__)

ADAPT_FILE = "adapt.json"
HEAD_FILE = "head.safetensors"


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


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


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
        feats = pool(out.last_hidden_state, attention_mask, self.pooling)
        if self.normalize:
            feats = nn.functional.normalize(feats, dim=-1) * self.scale
        return feats

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if features is not None:  # precomputed by the frozen encoder (see FeatureCache)
            return self.head(self.dropout(features))
        if self.frozen_encoder:
            with torch.no_grad():
                feats = self.features(input_ids, attention_mask)
        else:
            feats = self.features(input_ids, attention_mask)
        return self.head(self.dropout(feats))

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
    return AutoTokenizer.from_pretrained(str(model_dir))


def _encoder_blocks(encoder: nn.Module) -> nn.ModuleList:
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
        blocks = _encoder_blocks(model.encoder)
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
    """Write a self-contained checkpoint directory (adapters merged into the encoder weights)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    if hasattr(encoder, "merge_and_unload"):  # peft: export plain weights, not base + adapter
        encoder = copy.deepcopy(encoder).merge_and_unload()
    encoder.config.id2label = dict(enumerate(labels))
    encoder.config.label2id = {name: i for i, name in enumerate(labels)}
    encoder.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
              str(out_dir / HEAD_FILE))
    meta = {"task": "text-classification", "labels": labels, "pooling": model.pooling,
            "normalize": model.normalize, "scale": model.scale, **extra}
    (out_dir / ADAPT_FILE).write_text(json.dumps(meta, indent=2))
    (out_dir / "README.md").write_text(_README.format(labels=labels, pooling=model.pooling))


def load_exported(ckpt_dir: str | Path, device: str = "cpu") -> tuple[TextClassifier, object, dict]:
    """(model in eval mode, tokenizer, adapt.json) from a directory written by export()."""
    ckpt_dir = Path(ckpt_dir)
    meta = json.loads((ckpt_dir / ADAPT_FILE).read_text())
    model = TextClassifier(load_encoder(ckpt_dir), len(meta["labels"]), meta["pooling"],
                           meta["normalize"], 0.0)
    model.scale = meta.get("scale", model.scale)
    model.head.load_state_dict(load_file(str(ckpt_dir / HEAD_FILE)))
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


_README = """# A text classifier fine-tuned with adapt

Labels: {labels}. Pooling over tokens: {pooling} (as the base model was trained).

```python
import json, torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

path = "."  # this directory
tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
meta, head = json.load(open(f"{{path}}/adapt.json")), load_file(f"{{path}}/head.safetensors")
batch = tok(["a fine film"], padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    hidden = enc(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    feats = (hidden * m).sum(1) / m.sum(1)          # mean pooling
    if meta["normalize"]:
        feats = torch.nn.functional.normalize(feats, dim=-1) * meta["scale"]
    probs = (feats @ head["weight"].T + head["bias"]).softmax(-1)
print(meta["labels"][probs.argmax(-1).item()])
```
"""
