"""The classifier as a transformers model class, shipped inside every exported text checkpoint
(config.json's `auto_map` points at it), so that

    AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
    pipeline("text-classification", model=path, trust_remote_code=True)

build exactly what the service predicts with: the encoder, the pooling it was trained with (→ L2
normalise and scale, when so), a linear head. config.json's `model_type` is one transformers does
not know, so loading without trust_remote_code raises instead of guessing a head.

Texts are read as the service reads them: cut at the model's max_length, or, for a model trained
with chunking, split into overlapping windows whose logits are averaged per text. The pipeline
does that itself (pipeline_adapt.py, named in config.json's `custom_pipelines`);
`model.predict_texts(tokenizer, texts)` does it for the model alone.

Self-contained on purpose (torch and transformers only): this file is copied as it is.
"""
import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

MODEL_TYPE = "adapt-text-classifier"


class AdaptTextClassifierConfig(PretrainedConfig):
    """The encoder's own config (a dict, under `adapt_encoder`) + pooling, normalize, scale, the
    calibration temperature the logits are divided by (1.0: none), and how texts are read: the
    tokens of a window (`adapt_max_length`; None: as the tokenizer gives them) and `adapt_chunking`
    ({"overlap", "max_chunks"}: long texts in overlapping windows; None: cut at max_length)."""

    model_type = MODEL_TYPE

    def __init__(self, adapt_encoder: dict | None = None, pooling: str = "mean",
                 normalize: bool = False, scale: float = 1.0,
                 calibration_temperature: float = 1.0, adapt_max_length: int | None = None,
                 adapt_chunking: dict | None = None, **kwargs):
        self.adapt_encoder = dict(adapt_encoder or {})
        self.pooling, self.normalize, self.scale = pooling, normalize, scale
        # not `temperature`: transformers reserves that name for generation (`max_length` too)
        self.calibration_temperature = calibration_temperature
        self.adapt_max_length, self.adapt_chunking = adapt_max_length, adapt_chunking
        super().__init__(**kwargs)


def window_texts(tokenizer, texts: list[str], config: AdaptTextClassifierConfig
                 ) -> tuple[list[list[int]], list[int]]:
    """(token ids of every window, the text each belongs to): each text cut at the model's
    max_length, or (chunking) its first max_chunks windows of max_length tokens, neighbours
    sharing `overlap` tokens (the tokenizer's overflow with stride), as the service reads it."""
    if config.adapt_max_length is None:  # a checkpoint that recorded no window: whole texts
        return tokenizer(list(texts))["input_ids"], list(range(len(texts)))
    chunking = config.adapt_chunking or {"overlap": 0, "max_chunks": 1}
    enc = tokenizer(list(texts), truncation=True, max_length=config.adapt_max_length,
                    stride=chunking["overlap"], return_overflowing_tokens=True)
    kept = [[] for _ in texts]
    for window, text in zip(enc["input_ids"], enc["overflow_to_sample_mapping"], strict=True):
        if len(kept[text]) < chunking["max_chunks"]:
            kept[text].append(window)
    return [w for ws in kept for w in ws], [t for t, ws in enumerate(kept) for _ in ws]


def pool_windows(logits: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    """The mean of each text's window logits ([windows, C] → [texts, C]; doc: each row's text)."""
    n = int(doc.max()) + 1
    sums = torch.zeros(n, logits.shape[-1], dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, doc, logits)
    counts = torch.bincount(doc, minlength=n).to(logits.dtype)
    return sums / counts.unsqueeze(-1)


def encoder_config(cfg: dict) -> PretrainedConfig:
    return CONFIG_MAPPING[cfg["model_type"]].from_dict(cfg)


def build_encoder(cfg: dict) -> nn.Module:
    """The encoder from its config dict, without weights (they come from model.safetensors). A
    head-pruned encoder's config records the heads every layer kept (`adapt_attention_heads`)."""
    config = encoder_config(cfg)
    try:
        encoder = AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler don't take the argument
        encoder = AutoModel.from_config(config)
    heads = cfg.get("adapt_attention_heads")
    if heads:
        shrink_attention(encoder, int(heads))
    return encoder


def attention_blocks(encoder: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(self-attention, its output module) of every BERT-style layer: a module with `query`, `key`,
    `value` linears and an `attention_head_size`, beside an output module whose `dense` linear
    projects the heads back to the hidden size."""
    blocks = []
    for module in encoder.modules():
        attn, out = getattr(module, "self", None), getattr(module, "output", None)
        if (isinstance(attn, nn.Module) and hasattr(attn, "attention_head_size")
                and all(isinstance(getattr(attn, n, None), nn.Linear)
                        for n in ("query", "key", "value"))
                and isinstance(getattr(out, "dense", None), nn.Linear)):
            blocks.append((attn, out))
    return blocks


def shrink_attention(encoder: nn.Module, heads: int) -> None:
    """Give every layer `heads` attention heads of the configured head size: the shapes of a
    head-pruned checkpoint's weights (the attention reshapes by head size, so it runs as is)."""
    for attn, out in attention_blocks(encoder):
        width = heads * attn.attention_head_size
        for name in ("query", "key", "value"):
            old = getattr(attn, name)
            setattr(attn, name, nn.Linear(old.in_features, width, bias=old.bias is not None))
        attn.num_attention_heads, attn.all_head_size = heads, width
        out.dense = nn.Linear(width, out.dense.out_features, bias=out.dense.bias is not None)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class _AdaptPreTrained(PreTrainedModel):
    config_class = AdaptTextClassifierConfig
    base_model_prefix = "encoder"

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):  # only what the checkpoint lacks is initialised
            module.weight.data.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.data.zero_()


class AdaptEncoderModel(_AdaptPreTrained):
    """The encoder alone (AutoModel): token embeddings, e.g. for sentence-transformers."""

    _keys_to_ignore_on_load_unexpected = [r"^head\."]

    def __init__(self, config: AdaptTextClassifierConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.adapt_encoder)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> BaseModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return BaseModelOutput(last_hidden_state=out.last_hidden_state)


class AdaptForSequenceClassification(_AdaptPreTrained):
    """encoder → pooling (→ L2 normalise × scale) → dropout → linear → ÷ temperature: calibrated
    logits per label (their softmax is what the service's predict returns)."""

    def __init__(self, config: AdaptTextClassifierConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.adapt_encoder)
        self.dropout = nn.Dropout(0.0)
        self.head = nn.Linear(self.encoder.config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None,
                **kwargs) -> SequenceClassifierOutput:
        # token_type_ids are not passed on: the service's encoder runs without them too
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        feats = pool(hidden, attention_mask, self.config.pooling)
        if self.config.normalize:
            feats = nn.functional.normalize(feats, dim=-1) * self.config.scale
        temperature = getattr(self.config, "calibration_temperature", 1.0)
        logits = self.head(self.dropout(feats)) / temperature
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def predict_texts(self, tokenizer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Calibrated probabilities [texts, labels] as the service's predict gives them: every
        window of a text (window_texts) through the model, the windows' logits averaged."""
        ids, doc = window_texts(tokenizer, texts, self.config)
        logits = []
        for b in range(0, len(ids), batch_size):
            batch = tokenizer.pad({"input_ids": ids[b: b + batch_size]}, return_tensors="pt")
            logits.append(self(**{k: v.to(self.device) for k, v in batch.items()}).logits)
        return pool_windows(torch.cat(logits), torch.tensor(doc, device=self.device)).softmax(-1)
