"""Why a model predicted what it did, with Captum.

Text: integrated gradients on the encoder's token-embedding layer (LayerIntegratedGradients), from
a baseline that keeps the special tokens and puts padding in place of every other token; a
token's score is its attribution summed over the embedding's width, and a word's score (words are
the whitespace-separated spans of the original text) is the sum of its tokens' scores, found
through the tokenizer's character offsets. Positive: the word pushes toward the target label.

Long texts of a chunked model are read as predict reads them: every window (up to max_chunks) goes
through the encoder and the prediction is the softmax of the mean of the windows' logits. What is
attributed is that pooled probability, with all of a text's windows moved together from their
baselines: the integrated gradients then add up (completeness) to the change of the probability
predict reports — attributing each window's own probability instead would explain numbers predict
never gives (a window's softmax is not the document's, and they do not add up to it). A token in
the overlap of two windows is an input of both, and its effect on the document reaches the output
through both: its score is the sum of its two attributions (an average would halve its share and
break completeness). `truncated` is true only when words lie past the last window.

Images: integrated gradients on the pixels the model saw (its centre crop), from a blurred copy
of them as the baseline (what is there beyond the blur: edges and strokes); a pixel's score is its
positive attribution summed over the colour channels, placed back through the evaluation
transform (resize, centre crop) onto the input image at its own resolution, and scaled to [0, 1]
per image (0 outside the crop). Grad-CAM on the last block was tried first: at the small inputs
the service trains on (64 px → a 2×2 map) it ranked pixels worse than random ones
(benchmarks/explain_faithfulness.py).

An explanation of many inputs or steps runs many forward/backward passes (TOKENS_PER_PASS,
PIXELS_PER_PASS a pass); given `passes` (a Passes), it counts them and stops before the next one
once its `stop` event is set (raising Abandoned): a caller that has gone need not wait for the
rest to be computed for nobody."""
import bisect
import functools
import re
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from app.ml.data import collate, split_windows
from app.ml.vision import Preprocess

TEXT_METHOD = "integrated_gradients"
IMAGE_METHOD = "integrated_gradients"
TEXT_CHUNK = 8          # texts attributed together
TOKENS_PER_PASS = 8192  # interpolation steps × tokens in one forward/backward pass (memory bound)
IMAGE_CHUNK = 16
PIXELS_PER_PASS = 16 * 224 * 224  # interpolation steps × pixels in one forward/backward pass
BLUR_SIGMA = 0.05  # the baseline's Gaussian blur, as a fraction of the crop's side


class Abandoned(Exception):
    """The explanation was stopped between two passes (Passes.stop was set)."""


@dataclass
class Passes:
    """The forward/backward passes of one explanation: counted (`done`), and none started once
    `stop` is set (set from another thread: the caller has gone)."""

    stop: threading.Event = field(default_factory=threading.Event)
    done: int = 0

    def counted(self, forward):
        """forward, checking `stop` (Abandoned) and counting before each call."""
        @functools.wraps(forward)  # (its signature: Captum reads it)
        def run(*args):
            if self.stop.is_set():
                raise Abandoned(f"stopped after {self.done} passes")
            self.done += 1
            return forward(*args)
        return run


@dataclass
class Explanation:
    probs: torch.Tensor            # the model's probabilities for the input, one per label
    target: int                    # the label index the attributions are for
    words: list[tuple[str, int, int, float]] = field(default_factory=list)  # word, start, end, score
    truncated: bool = False        # words past what the model reads (scored 0)
    heatmap: np.ndarray | None = None  # float32 [H, W] in [0, 1], at the input's resolution


def words_of(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for every whitespace-separated span of the text."""
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def merge_to_words(text: str, offsets: list[tuple[int, int]], token_scores: list[float]
                   ) -> tuple[list[tuple[str, int, int, float]], bool]:
    """Token scores summed into the words their character offsets fall in; (words, whether some
    word had no token, i.e. was cut off by truncation)."""
    words = words_of(text)
    starts = [s for _, s, _ in words]
    totals, seen = [0.0] * len(words), [False] * len(words)
    for (s, e), score in zip(offsets, token_scores, strict=True):
        if e <= s:  # special tokens and padding have empty spans
            continue
        w = bisect.bisect_right(starts, s) - 1
        if w >= 0 and s < words[w][2]:
            totals[w] += score
            seen[w] = True
    return ([(w, s, e, t) for (w, s, e), t in zip(words, totals, strict=True)],
            not all(seen))


def _pooled_probabilities(model: nn.Module, temperature: float, doc: torch.Tensor):
    """forward(input_ids, attention_mask) → each text's probabilities: the softmax of the mean of
    its windows' logits (rows: windows, `doc`: their texts) ÷ temperature, as predict gives them.
    Captum runs several interpolation steps in one call, its inputs repeated step after step: the
    rows of step s are windows s·W … (s+1)·W − 1, and their texts become s·T … (s+1)·T − 1."""
    windows, texts = len(doc), int(doc.max()) + 1

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        steps = input_ids.shape[0] // windows
        shift = torch.arange(steps, device=doc.device).repeat_interleave(windows) * texts
        logits = model(input_ids, attention_mask, doc=doc.repeat(steps) + shift)
        return (logits.float() / temperature).softmax(-1)
    return forward


def _of_target(forward, targets: list[int]):
    """forward's probability of each text's target (one number a text and step): Captum's own
    target argument must have a row per input row, and the rows here are windows, not texts."""
    def target_probability(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        probs = forward(input_ids, attention_mask)
        tgt = torch.tensor(targets, device=probs.device).repeat(len(probs) // len(targets))
        return probs.gather(1, tgt[:, None])[:, 0]
    return target_probability


def explain_texts(model: nn.Module, tokenizer, texts: list[str], max_length: int,
                  targets: list[int | None], steps: int, device: str = "cpu",
                  temperature: float = 1.0, chunking: dict | None = None,
                  passes: Passes | None = None) -> list[Explanation]:
    """Word attributions for each text toward its target (None: the predicted label), with
    integrated gradients of the target's (calibrated: logits / temperature) probability, in
    `steps` steps. Each text is read as predict reads it: cut at max_length, or (`chunking`, the
    checkpoint's {"overlap", "max_chunks"}) in the windows it was trained with, the windows'
    logits averaged (see the module's docstring). `passes`: counted, and stopped (Abandoned)."""
    overlap, max_chunks = (chunking["overlap"], chunking["max_chunks"]) if chunking else (0, 1)
    enc, rows = split_windows(tokenizer, texts, max_length, overlap, max_chunks,
                              return_offsets_mapping=True, return_special_tokens_mask=True)
    # deferred: captum.attr takes ~1.5 s to import (matplotlib): only when something is explained.
    from captum.attr import LayerIntegratedGradients

    passes = passes if passes is not None else Passes()
    pad_id = tokenizer.pad_token_id or 0
    embeddings = model.encoder.get_input_embeddings()
    order = sorted(range(len(texts)), key=lambda i: sum(len(enc["input_ids"][r]) for r in rows[i]))
    out: list[Explanation | None] = [None] * len(texts)
    for c in range(0, len(order), TEXT_CHUNK):
        idx = order[c: c + TEXT_CHUNK]
        flat = [(j, r) for j, i in enumerate(idx) for r in rows[i]]  # (text in chunk, window)
        batch = collate([enc["input_ids"][r] for _, r in flat], pad_id)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        special = collate([enc["special_tokens_mask"][r] for _, r in flat], 1)["input_ids"]
        special = special.to(device)
        baseline = torch.where(special.bool(), ids, torch.full_like(ids, pad_id))
        pooled = _pooled_probabilities(model, temperature,
                                       torch.tensor([j for j, _ in flat], device=device))
        with torch.no_grad():
            probs = passes.counted(pooled)(ids, mask).cpu()
        tgt = [targets[i] if targets[i] is not None else int(probs[j].argmax())
               for j, i in enumerate(idx)]
        lig = LayerIntegratedGradients(passes.counted(_of_target(pooled, tgt)), embeddings)
        attr = lig.attribute(ids, baselines=baseline, additional_forward_args=(mask,),
                             n_steps=steps,
                             internal_batch_size=max(len(flat), TOKENS_PER_PASS // ids.shape[1]))
        scores = (attr.sum(-1) * mask).detach().float().cpu()
        offsets: list[list] = [[] for _ in idx]
        token_scores: list[list[float]] = [[] for _ in idx]
        for k, (j, r) in enumerate(flat):  # a text's windows in order; overlapping tokens sum
            offsets[j] += [tuple(o) for o in enc["offset_mapping"][r]]
            token_scores[j] += scores[k, :len(enc["input_ids"][r])].tolist()
        for j, i in enumerate(idx):
            words, truncated = merge_to_words(texts[i], offsets[j], token_scores[j])
            out[i] = Explanation(probs[j], tgt[j], words=words, truncated=truncated)
    return out


def _resized(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(size): the shorter side becomes size."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def place_heatmap(cam: torch.Tensor, width: int, height: int, pre: Preprocess) -> np.ndarray:
    """A [h, w] map over the model's centre crop → [height, width] over the original image,
    through the inverse of the evaluation transform (resize, centre crop); scaled to [0, 1]."""
    crop = pre.image_size
    rw, rh = _resized(width, height, int(round(crop / 0.875)))
    top, left = int(round((rh - crop) / 2.0)), int(round((rw - crop) / 2.0))
    canvas = torch.zeros(1, 1, rh, rw)
    canvas[..., top: top + crop, left: left + crop] = F.interpolate(
        cam[None, None].float(), size=(crop, crop), mode="bilinear", align_corners=False)
    heat = F.interpolate(canvas, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    heat = heat.clamp(min=0)
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat).numpy().astype(np.float32)


def blurred(pixels: torch.Tensor) -> torch.Tensor:
    """The baseline: each image blurred (Gaussian, sigma a fixed fraction of its side)."""
    # deferred: torchvision.transforms.v2.functional only where images are explained.
    from torchvision.transforms.v2 import functional as TF

    sigma = max(0.5, BLUR_SIGMA * pixels.shape[-1])
    kernel = 2 * int(3 * sigma) + 1
    return TF.gaussian_blur(pixels, [kernel, kernel], [sigma, sigma])


def explain_images(net: nn.Module, pre: Preprocess, images: list[Image.Image],
                   targets: list[int | None], steps: int, device: str = "cpu",
                   temperature: float = 1.0, passes: Passes | None = None) -> list[Explanation]:
    """A heatmap per image toward its target (None: the predicted label): integrated gradients
    of the target's (calibrated) probability from the blurred image, in `steps` steps.
    `passes`: counted, and stopped (Abandoned)."""
    # deferred: captum.attr takes ~1.5 s to import (matplotlib): only when something is explained.
    from captum.attr import IntegratedGradients

    passes = passes if passes is not None else Passes()
    probabilities = passes.counted(lambda x: (net(x).float() / temperature).softmax(-1))
    ig = IntegratedGradients(probabilities)
    transform = pre.eval_transform()
    out: list[Explanation] = []
    for c in range(0, len(images), IMAGE_CHUNK):
        chunk = images[c: c + IMAGE_CHUNK]
        pixels = torch.stack([transform(img) for img in chunk]).to(device)
        with torch.no_grad():
            probs = probabilities(pixels).cpu()
        tgt = [targets[c + j] if targets[c + j] is not None else int(probs[j].argmax())
               for j in range(len(chunk))]
        per_pass = max(len(chunk), PIXELS_PER_PASS // (pixels.shape[-1] * pixels.shape[-2]))
        attr = ig.attribute(pixels, baselines=blurred(pixels), target=tgt, n_steps=steps,
                            internal_batch_size=per_pass)
        maps = attr.detach().float().sum(1).clamp(min=0).cpu()
        for j, img in enumerate(chunk):
            out.append(Explanation(probs[j], tgt[j], heatmap=place_heatmap(maps[j], *img.size, pre)))
    return out
