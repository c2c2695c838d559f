"""What a model costs and how well it does, measured the same way for any exported checkpoint:
parameters, weight-file size, forward latency at batch 1 on this CPU, accuracy on given examples.
A distilled or pruned model is measured beside its source with these (workers/compression.py,
benchmarks/compress.py). Texts are read as predict reads them: a chunked model's in its windows,
so batch 1 is one text (all its windows) and accuracy is that of the mean of the windows' logits."""
import statistics
import time
import zipfile
from pathlib import Path

import torch

from app.ml import data as D
from app.ml import modeling, vision
from app.ml.distill import teacher_logits

__all__ = ["compare", "figures"]


def _load(ckpt_dir: Path, inputs: list, images_zip: Path | None) -> tuple[torch.nn.Module, list]:
    """(model on CPU in eval mode, one ready batch-1 input dict per example)."""
    if images_zip is not None:
        net, pre, _ = vision.load_exported(ckpt_dir)
        tf = pre.eval_transform()
        with zipfile.ZipFile(images_zip) as zf:
            ready = [{"x": tf(vision.decode_image(zf.read(m)))[None]} for m in inputs]
        return _Positional(net), ready
    model, tokenizer, meta = modeling.load_exported(ckpt_dir)
    windows = D.text_windows(tokenizer, list(inputs), meta.get("max_length", 128),
                             meta.get("chunking"))
    pad = tokenizer.pad_token_id or 0
    return model, [D.collate_windows([w], pad) for w in windows]


class _Positional(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@torch.inference_mode()
def latency_ms_b1(model: torch.nn.Module, ready: list, warmup: int = 3) -> float:
    """Median wall time of one forward pass at batch 1 (CPU), in milliseconds."""
    for inputs in ready[:warmup]:
        model(**inputs)
    times = []
    for inputs in ready:
        t0 = time.perf_counter()
        model(**inputs)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def figures(ckpt_dir: Path, inputs: list, labels: list[int], *, images_zip: Path | None = None,
            latency_examples: int = 30, max_eval: int = 2000) -> dict:
    """{params, size_bytes, latency_ms_b1, accuracy} of the checkpoint; accuracy over the first
    max_eval of (inputs, labels), latency over the first latency_examples of them."""
    ckpt_dir = Path(ckpt_dir)
    model, ready = _load(ckpt_dir, inputs[:latency_examples], images_zip)
    out = {"params": sum(p.numel() for p in model.parameters()),
           "size_bytes": sum(f.stat().st_size for f in ckpt_dir.glob("*.safetensors")),
           "latency_ms_b1": latency_ms_b1(model, ready) if ready else None}
    n = min(len(inputs), max_eval)
    if n:
        preds = teacher_logits(ckpt_dir, inputs[:n], images_zip=images_zip).argmax(-1).tolist()
        out["accuracy"] = round(sum(p == y for p, y in zip(preds, labels, strict=False)) / n, 4)
    else:
        out["accuracy"] = None
    return out


def compare(model: dict, source: dict) -> dict:
    """The deltas of `model` against `source`: accuracy points, speed-up, size and params ratio."""
    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    acc = (round(model["accuracy"] - source["accuracy"], 4)
           if model.get("accuracy") is not None and source.get("accuracy") is not None else None)
    return {"accuracy": acc,
            "speedup_b1": ratio(source.get("latency_ms_b1"), model.get("latency_ms_b1")),
            "params_ratio": ratio(model.get("params"), source.get("params")),
            "size_ratio": ratio(model.get("size_bytes"), source.get("size_bytes"))}
