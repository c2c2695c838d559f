"""Structured pruning of a text classifier's encoder (each layer's FFN channels and attention
heads) and of an image classifier's convolution channels (`prune_channels`, at the end).

torch-pruning (`MetaPruner`, L2-magnitude importance, the same ratio in every layer) removes

- the least important output channels of every `intermediate.dense` and, through its dependency
  graph, the matching input channels of the following `output.dense`;
- the least important whole heads of every self-attention (`num_heads` + `prune_num_heads`: the
  same heads from `query`, `key` and `value`, and the matching input channels of the attention's
  output projection), keeping the head size;

every other linear layer is ignored, so the hidden width and the embeddings stay as they are. Every
layer keeps the same number of channels and heads, so the encoder's config records them in its one
`intermediate_size` and in `adapt_attention_heads` (read by modeling_adapt.build_encoder), and an
exported checkpoint reloads at those shapes — in the service and with trust_remote_code alike.
"""
import torch
from torch import nn

from app.ml import modeling, vision
from app.ml.modeling import TextClassifier
from app.ml.modeling_adapt import attention_blocks

__all__ = ["prune_channels", "prune_encoder", "prune_ffn", "pruned_copy", "pruned_image_copy",
           "parameter_count"]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _ffn_layers(model: TextClassifier) -> list[nn.Linear]:
    return [m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.endswith("intermediate.dense")]


def _kept(total: int, ratio: float) -> int:
    return max(1, total - int(ratio * total))


def prune_encoder(model: TextClassifier, ffn: float = 0.0, heads: float = 0.0) -> TextClassifier:
    """Remove `ffn` of every layer's FFN channels and `heads` of every layer's attention heads (in
    place); the encoder's config is updated."""
    # deferred: torch-pruning only for prune jobs (its import pulls in its whole pruner zoo).
    import torch_pruning as tp

    for name, ratio in (("FFN", ffn), ("attention-head", heads)):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"the {name} pruning ratio must be at least 0 and below 1")
    if ffn == 0.0 and heads == 0.0:
        raise ValueError("nothing to prune: give an FFN or an attention-head ratio")
    layers = _ffn_layers(model) if ffn else []
    if ffn and not layers:
        raise ValueError("this encoder has no BERT-style intermediate.dense layers to prune")
    blocks = attention_blocks(model.encoder) if heads else []
    if heads and not blocks:
        raise ValueError("this encoder has no BERT-style self-attention (query, key, value) whose "
                         "heads could be pruned")
    width = layers[0].out_features if layers else 0
    keep = _kept(width, ffn) if layers else 0
    n_heads = blocks[0][0].num_attention_heads if blocks else 0
    keep_heads = _kept(n_heads, heads) if blocks else 0
    qkv = {getattr(attn, n): attn.num_attention_heads for attn, _ in blocks
           for n in ("query", "key", "value")}
    ignored = [m for m in model.modules()
               if isinstance(m, nn.Linear) and m not in layers and m not in qkv]
    example = {"input_ids": torch.ones(1, 8, dtype=torch.long),
               "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    was_training = model.training
    model.eval()
    pruner = tp.pruner.MetaPruner(
        model, example_inputs=example, importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio_dict={m: 1.0 - keep / width for m in layers}, ignored_layers=ignored,
        global_pruning=False, round_to=None,
        **({"num_heads": qkv, "prune_num_heads": True, "prune_head_dims": False,
            "head_pruning_ratio": 1.0 - keep_heads / n_heads} if blocks else {}))
    pruner.step()
    if layers:
        sizes = {m.out_features for m in layers}
        if sizes != {keep}:
            raise RuntimeError(f"pruning left FFN widths {sorted(sizes)}, expected {keep}")
        model.encoder.config.intermediate_size = keep
    if blocks:
        for attn, out in blocks:
            attn.num_attention_heads = keep_heads
            attn.all_head_size = keep_heads * attn.attention_head_size
            shapes = {tuple(getattr(attn, n).weight.shape) for n in ("query", "key", "value")}
            if shapes != {(attn.all_head_size, attn.query.in_features)} or (
                    out.dense.in_features != attn.all_head_size):
                raise RuntimeError(f"head pruning left shapes {sorted(shapes)}, expected "
                                   f"{keep_heads} heads of {attn.attention_head_size}")
        model.encoder.config.adapt_attention_heads = keep_heads
    return model.train(was_training)


def prune_ffn(model: TextClassifier, ratio: float) -> TextClassifier:
    """Remove `ratio` of every layer's FFN channels (in place); the encoder's config is updated."""
    return prune_encoder(model, ffn=ratio)


def pruned_copy(ckpt_dir, ffn_ratio: float, dropout: float,
                heads_ratio: float = 0.0) -> TextClassifier:
    """The exported classifier in ckpt_dir with `ffn_ratio` of its FFN channels and `heads_ratio`
    of its attention heads removed, set to train (deterministic: a resumed run rebuilds the same
    shapes before loading its weights)."""
    model, _, _ = modeling.load_exported(ckpt_dir)
    model.dropout = nn.Dropout(dropout)
    return prune_encoder(model.train(), ffn_ratio, heads_ratio)


def prune_channels(model, ratio: float, image_size: int = 64):
    """Remove `ratio` of the channels of every convolution of an image classifier
    (vision.VisionClassifier; in place) — the least important by L2 magnitude, with torch-pruning
    keeping what depends on them consistent (batch norms, depthwise convolutions, residual sums,
    squeeze-excitation); the final classifier keeps its classes. vision.conform restores the
    shapes when the exported checkpoint is loaded."""
    import torch_pruning as tp  # deferred: only prune jobs need it (see prune_encoder)

    if not 0.0 < ratio < 1.0:
        raise ValueError("the channel pruning ratio must be between 0 and 1")
    head = model.net.get_submodule(vision.ARCHITECTURES[model.arch].head)
    was_training = model.training
    model.eval()
    pruner = tp.pruner.MetaPruner(
        model.net, example_inputs=torch.zeros(1, 3, image_size, image_size),
        importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
        ignored_layers=[head], global_pruning=False, round_to=None)
    pruner.step()
    return model.train(was_training)


def pruned_image_copy(ckpt_dir, ratio: float):
    """The exported image classifier in ckpt_dir with `ratio` of its channels removed, set to
    train (deterministic, like pruned_copy)."""
    net, _, meta = vision.load_exported(ckpt_dir)
    model = vision.VisionClassifier(meta["architecture"], meta["num_classes"])
    model.net = net
    return prune_channels(model.train(), ratio)
