"""ONNX exports of fine-tuned models: torch.onnx for the graph, onnxruntime's quantisation for
int8, onnxruntime's float16 converter for fp16; and a directory that runs with onnxruntime alone
(model.onnx, the tokenizer and windows.json or the image preprocessing, labels.json, README.md).

A text model's graph gives one row of logits per window of tokens; a text is read as predict reads
it: tokenizer.json cuts it at max_length — with the model's overlap as stride, so that the
encoding's `overflowing` holds the further windows of a chunked model — and windows.json says
how many windows a text has at most (1 without chunking); the text's logits are the mean of its
windows' (the README's code does exactly that)."""
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.transformers.float16 import convert_float_to_float16
from torch import nn

from app.ml.modeling import load_exported, reading
from app.ml.vision import load_exported as load_vision

OPSET = 17
IMAGE_TASK = "image-classification"


class _TextLogits(nn.Module):
    """(input_ids, attention_mask) → logits: the signature the ONNX graph gets."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)


class _Calibration(CalibrationDataReader):
    """Pixel batches for static quantisation's activation ranges (training images, not the
    validation images the export is measured on)."""

    def __init__(self, batches: list[np.ndarray]):
        self._it = iter([{"pixel_values": b} for b in batches])

    def get_next(self) -> dict | None:
        return next(self._it, None)


def task_of(ckpt_dir: Path) -> str:
    return json.loads((Path(ckpt_dir) / "adapt.json").read_text())["task"]


def _torch_export(module: nn.Module, args: tuple, path: Path, names: list[str],
                  axes: dict) -> None:
    # The TorchScript-based exporter (dynamo=False): it traces BERT-style encoders and torchvision
    # networks with dynamic axes as they are, without the onnxscript toolchain.
    torch.onnx.export(module, args, str(path), input_names=names, output_names=["logits"],
                      dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=OPSET,
                      dynamo=False)


def _text(ckpt_dir: Path, out_dir: Path, fp32: Path) -> dict:
    model, tokenizer, meta = load_exported(ckpt_dir)
    sample = tokenizer(["an example", "a second, longer example"], padding=True,
                       return_tensors="pt")
    seq = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        _torch_export(_TextLogits(model), (sample["input_ids"], sample["attention_mask"]), fp32,
                      ["input_ids", "attention_mask"], {"input_ids": seq, "attention_mask": seq})
    tokenizer.save_pretrained(out_dir)
    # tokenizer.json pads and cuts into windows by itself: `Tokenizer.from_file` + `encode_batch`
    # give the model's inputs (an encoding and its `overflowing` windows) with nothing to configure.
    windows = window_settings(meta)
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(windows["max_length"], stride=windows["overlap"])
    backend.enable_padding(pad_id=tokenizer.pad_token_id or 0, pad_token=tokenizer.pad_token)
    backend.save(str(out_dir / "tokenizer.json"))
    (out_dir / "windows.json").write_text(json.dumps(windows, indent=2))
    return meta


def window_settings(meta: dict) -> dict:
    """How a text model reads a text (its adapt.json `meta`): windows of max_length tokens,
    neighbours sharing `overlap`, at most max_chunks a text (1 and 0 without chunking)."""
    chunking = meta.get("chunking") or {"overlap": 0, "max_chunks": 1}
    return {"max_length": meta.get("max_length", 128), "overlap": chunking["overlap"],
            "max_chunks": chunking["max_chunks"]}


def _image(ckpt_dir: Path, out_dir: Path, fp32: Path) -> dict:
    net, pre, meta = load_vision(ckpt_dir)
    sample = torch.zeros(2, 3, pre.image_size, pre.image_size)
    with torch.no_grad():
        _torch_export(net, (sample,), fp32, ["pixel_values"], {"pixel_values": {0: "batch"}})
    (out_dir / "preprocess.json").write_text(json.dumps({
        "input": "pixel_values", "layout": "NCHW", "color": "RGB",
        "resize_shorter_side": int(round(pre.image_size / 0.875)), "center_crop": pre.image_size,
        "scale": 1 / 255, "mean": list(pre.mean), "std": list(pre.std)}, indent=2))
    return meta


def export_onnx(ckpt_dir: Path, out_dir: Path, quantize: str | None,
                calibration: list[np.ndarray] | None = None) -> Path:
    """Write model.onnx and what running it needs into out_dir; returns model.onnx's path.
    `calibration`: pixel batches for an image model's int8 activation ranges."""
    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = task_of(ckpt_dir) == IMAGE_TASK
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        meta = (_image if image else _text)(ckpt_dir, out_dir, fp32)
        target = out_dir / "model.onnx"
        if quantize is None:
            shutil.move(fp32, target)
        elif quantize == "fp16":
            model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
            onnx.save(model, str(target))
        elif image:
            quantize_static(str(fp32), str(target), _Calibration(calibration or []),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        else:
            quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
    labels = meta["labels"]
    (out_dir / "labels.json").write_text(json.dumps({
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)}}, indent=2))
    (out_dir / "README.md").write_text((_IMAGE_README if image else _TEXT_README).format(
        labels=labels, quantize=quantize or "none", reading=None if image else reading(meta)))
    return target


_TEXT_README = """# A text classifier exported to ONNX by adapt

Labels: {labels}. Quantisation: {quantize}. {reading}
Runs with `onnxruntime` and `tokenizers` alone:

```python
import json, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
tok = Tokenizer.from_file("tokenizer.json")  # pads and cuts into windows as the model was trained
session, n = ort.InferenceSession("model.onnx"), json.load(open("windows.json"))["max_chunks"]
labels = json.load(open("labels.json"))["id2label"]
texts = ["an example text"]
def logits(w):  # a text's windows (one, or up to n overlapping ones if chunked): mean logits
    feed = {{"input_ids": np.array([x.ids for x in w], dtype=np.int64),
            "attention_mask": np.array([x.attention_mask for x in w], dtype=np.int64)}}
    return session.run(["logits"], feed)[0].mean(0)
print([labels[str(logits(([e] + e.overflowing)[:n]).argmax())] for e in tok.encode_batch(texts)])
```
"""

_IMAGE_README = """# An image classifier exported to ONNX by adapt

Labels: {labels}. Quantisation: {quantize}. Input `pixel_values`, float32 NCHW: RGB, the shorter
side resized as preprocess.json says, center-cropped, scaled to [0, 1], normalised by mean/std.

```python
import json, numpy as np, onnxruntime as ort
from PIL import Image
p = json.load(open("preprocess.json")); labels = json.load(open("labels.json"))["id2label"]
img = Image.open("photo.jpg").convert("RGB"); s = p["resize_shorter_side"] / min(img.size)
img = img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR)
c = p["center_crop"]; l, t = (img.width - c) // 2, (img.height - c) // 2
x = (np.asarray(img.crop((l, t, l + c, t + c)), np.float32) / 255 - p["mean"]) / p["std"]
logits = ort.InferenceSession("model.onnx").run(None, {{"pixel_values": x.transpose(2, 0, 1)[None].astype(np.float32)}})[0]
print(labels[str(int(logits.argmax()))])
```
"""
