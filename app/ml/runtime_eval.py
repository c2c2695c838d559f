"""Accuracy, macro-F1 and CPU latency at batch 1 and 32 of a model run by PyTorch or by
onnxruntime, on the same prepared inputs: the figures an export's evaluation sets side by side.
Texts are read as predict reads them: a chunked model's in windows (a batch's `doc` says which
text each row is), every runner averaging a text's window logits, so latencies are per text."""
import json
import statistics
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from app.ml.data import collate_windows, text_windows
from app.ml.metrics import classification_report
from app.ml.modeling import load_exported, load_tokenizer
from app.ml.modeling_adapt import pool_windows
from app.ml.onnx_export import IMAGE_TASK, task_of
from app.ml.vision import decode_image
from app.ml.vision import load_exported as load_vision

Batch = dict[str, np.ndarray]
Runner = Callable[[Batch], np.ndarray]  # prepared inputs → logits, one row an example
BATCH = 32
B1_EXAMPLES = 16  # single-example latency: the median over this many examples
B32_REPEATS = 5


class Inputs:
    """Turns examples (texts, or image archive members) into the model's input arrays."""

    def __init__(self, ckpt_dir: Path, images_zip: Path | None = None):
        self.image = task_of(ckpt_dir) == IMAGE_TASK
        if self.image:
            _, pre, _ = load_vision(ckpt_dir)
            self.transform, self.zip = pre.eval_transform(), zipfile.ZipFile(images_zip)
        else:
            self.tokenizer = load_tokenizer(ckpt_dir)
            meta = json.loads((Path(ckpt_dir) / "adapt.json").read_text())
            self.max_length, self.chunking = meta.get("max_length", 128), meta.get("chunking")

    def batch(self, examples: Sequence) -> Batch:
        """Pixels; or token ids and masks, with `doc` (each row's example) when chunked."""
        if self.image:
            pixels = [self.transform(decode_image(self.zip.read(m))) for m in examples]
            return {"pixel_values": torch.stack(pixels).numpy()}
        windows = text_windows(self.tokenizer, list(examples), self.max_length, self.chunking)
        batch = collate_windows(windows, self.tokenizer.pad_token_id or 0)
        if not self.chunking:
            del batch["doc"]  # one row an example
        return {k: v.numpy().astype(np.int64) for k, v in batch.items()}


def _per_example(logits: torch.Tensor, batch: Batch) -> np.ndarray:
    """Window rows → one row an example: the mean of each example's windows (as predict)."""
    if "doc" in batch:
        logits = pool_windows(logits, torch.from_numpy(batch["doc"]))
    return logits.float().numpy()


def torch_runner(ckpt_dir: Path) -> tuple[Runner, int]:
    """(fp32 PyTorch on CPU as the service serves it, the size of its weight files)."""
    if task_of(ckpt_dir) == IMAGE_TASK:
        net = load_vision(ckpt_dir)[0]
        run = lambda b: net(torch.from_numpy(b["pixel_values"]))  # noqa: E731
    else:
        model = load_exported(ckpt_dir)[0]
        run = lambda b: model(input_ids=torch.from_numpy(b["input_ids"]),  # noqa: E731
                              attention_mask=torch.from_numpy(b["attention_mask"]))

    @torch.inference_mode()
    def logits(batch: Batch) -> np.ndarray:
        return _per_example(run(batch), batch)

    return logits, sum(f.stat().st_size for f in Path(ckpt_dir).rglob("*.safetensors"))


def onnx_runner(onnx_path: Path) -> tuple[Runner, int]:
    """(onnxruntime's CPUExecutionProvider with as many threads as torch uses, the size of
    model.onnx). Idle threads sleep instead of spinning: on a shared CPU a spinning pool steals
    the cores the other work needs and makes latencies erratic."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def logits(batch: Batch) -> np.ndarray:
        out = session.run(["logits"], {k: v for k, v in batch.items() if k in names})[0]
        return _per_example(torch.from_numpy(out.astype(np.float32)), batch)

    return logits, Path(onnx_path).stat().st_size


def _scores(run: Runner, inputs: Inputs, examples: Sequence, y_true: Sequence[int],
            labels: list[str]) -> dict:
    preds = []
    for start in range(0, len(examples), BATCH):
        preds += run(inputs.batch(examples[start:start + BATCH])).argmax(-1).tolist()
    report = classification_report(list(y_true), preds, labels)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "predictions": preds}


def _latencies(runs: dict[str, Runner], inputs: Inputs, examples: Sequence) -> dict[str, dict]:
    """Median ms of one example and of a batch of 32 (examples repeated when there are fewer),
    the runners taking turns call by call, so that a change in the machine's load meets them
    all alike."""
    singles = [inputs.batch([x]) for x in examples[:B1_EXAMPLES]]
    full = inputs.batch([examples[i % len(examples)] for i in range(BATCH)])
    times: dict[str, dict[str, list[float]]] = {n: {"b1": [], "b32": []} for n in runs}
    for run in runs.values():  # warm-up: first-call allocations and graph optimisation
        run(singles[0]), run(full)
    for key, batches, repeats in (("b1", singles, 2), ("b32", [full], B32_REPEATS)):
        for _ in range(repeats):
            for batch in batches:
                for name, run in runs.items():
                    t0 = time.perf_counter()
                    run(batch)
                    times[name][key].append(time.perf_counter() - t0)
    return {n: {f"latency_ms_{k}": statistics.median(v) * 1000 for k, v in t.items()}
            for n, t in times.items()}


def measure(runs: dict[str, tuple[Runner, int]], inputs: Inputs, examples: Sequence,
            y_true: Sequence[int], labels: list[str]) -> dict[str, dict]:
    """For each named (runner, size): accuracy and macro-F1 over the examples (batches of 32),
    the predictions, latency at batch 1 and 32, and the size."""
    speed = _latencies({n: run for n, (run, _) in runs.items()}, inputs, examples)
    return {n: {**_scores(run, inputs, examples, y_true, labels), **speed[n], "size_bytes": size}
            for n, (run, size) in runs.items()}


def delta(original: dict, export: dict) -> dict:
    """The export against the original: accuracy and macro-F1 (export − original), speed-ups
    (original latency ÷ export latency), size ratio (export ÷ original), and agreement (the
    share of examples both label alike)."""
    same = sum(a == b for a, b in zip(original["predictions"], export["predictions"], strict=True))
    return {"accuracy": export["accuracy"] - original["accuracy"],
            "macro_f1": export["macro_f1"] - original["macro_f1"],
            "speedup_b1": original["latency_ms_b1"] / export["latency_ms_b1"],
            "speedup_b32": original["latency_ms_b32"] / export["latency_ms_b32"],
            "size_ratio": export["size_bytes"] / original["size_bytes"],
            "agreement": same / max(1, len(export["predictions"]))}
