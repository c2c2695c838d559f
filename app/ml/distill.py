"""Knowledge distillation: a student trained on the labels and on a teacher's softened logits.

`DistillTask` wraps the student's own task (TextTask or ImageTask): `prepare` builds the student
(every weight trains), then runs the teacher ONCE over the training examples and keeps its logits
in `logits_path` (a file in the job's resume directory), so later epochs, and a run resumed after
a crash, read them instead of running the teacher again. Each training batch's labels carry the
teacher's logits beside the label index ([B, 1 + C]: column 0 the label, then the logits), and

    loss = alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

With augment_copies (text), altered copies of the training texts join the training set, labelled
by the teacher alone (their label is IGNORE_LABEL: KL only), as in Tang et al. 2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks": the teacher's knowledge reaches
the student through far more inputs than the labelled ones.

Evaluation and export are the student task's own: the student is an ordinary model.
"""
import hashlib
import os
import random
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from app.ml import data as D
from app.ml import modeling, vision
from app.ml.config import TrainConfig
from app.ml.tasks import Batch, EvalBatch, Task

__all__ = ["DistillTask", "augment_texts", "distill_loss", "shallow_student", "teacher_logits"]


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                 temperature: float, alpha: float) -> torch.Tensor:
    """alpha·T²·KL(teacher_T ‖ student_T) + (1 − alpha)·CE(student, labels): the KL term is the
    batch mean, the CE term the mean over the labelled examples (IGNORE_LABEL: teacher only)."""
    t = temperature
    kl = nn.functional.kl_div(nn.functional.log_softmax(student / t, dim=-1),
                              nn.functional.log_softmax(teacher / t, dim=-1),
                              reduction="batchmean", log_target=True)
    labelled = labels != D.IGNORE_LABEL
    ce = (nn.functional.cross_entropy(student[labelled], labels[labelled]) if labelled.any()
          else student.sum() * 0.0)
    return alpha * t * t * kl + (1.0 - alpha) * ce


def augment_texts(texts: list[str], copies: int, seed: int, mask_token: str | None,
                  p_mask: float = 0.1, p_replace: float = 0.1, p_ngram: float = 0.25,
                  max_ngram: int = 5) -> list[str]:
    """`copies` altered copies of each text (copy-major), Tang et al.'s rules: each word is
    masked with p_mask (dropped when there is no mask token), else replaced with p_replace by a
    word drawn from the texts' own word distribution (theirs draws one of the same part of
    speech), and then with p_ngram only an n-gram (n ≤ max_ngram) of the result is kept. A
    function of (texts, copies, seed): a resumed job makes the same copies."""
    rng = random.Random(f"augment:{seed}")
    pool = [w for t in texts for w in t.split()]
    out = []
    for _ in range(copies):
        for text in texts:
            words = []
            for w in text.split():
                x = rng.random()
                if x < p_mask:
                    if mask_token:
                        words.append(mask_token)
                elif x < p_mask + p_replace:
                    words.append(rng.choice(pool))
                else:
                    words.append(w)
            if words and rng.random() < p_ngram:
                n = rng.randint(1, min(max_ngram, len(words)))
                at = rng.randrange(len(words) - n + 1)
                words = words[at: at + n]
            out.append(" ".join(words) or text)
    return out


def keep_layers(total: int, keep: int) -> list[int]:
    """Which of `total` layers a `keep`-layer student takes: evenly spaced, the last one always
    (6 → 2: [2, 5]; 6 → 3: [1, 3, 5])."""
    if not 1 <= keep <= total:
        raise ValueError(f"student_layers must be between 1 and the teacher's {total} layers")
    return [round((i + 1) * total / keep) - 1 for i in range(keep)]


def shallow_student(teacher_dir: Path, layers: int, dropout: float) -> modeling.TextClassifier:
    """The teacher's classifier (embeddings, pooling, head) with only `layers` of its encoder's
    layers, each initialised from the teacher's."""
    model, _, _ = modeling.load_exported(teacher_dir)
    blocks = modeling.encoder_blocks(model.encoder)
    kept = nn.ModuleList([blocks[i] for i in keep_layers(len(blocks), layers)])
    for parent in model.encoder.modules():  # the module holding the block list
        for name, child in list(parent.named_children()):
            if child is blocks:
                setattr(parent, name, kept)
    model.encoder.config.num_hidden_layers = layers  # the exported config reloads this depth
    model.dropout = nn.Dropout(dropout)
    return model.train()


def _fingerprint(teacher_dir: Path, inputs: list) -> str:
    h = hashlib.sha256((teacher_dir / "adapt.json").read_bytes())
    for x in inputs:
        h.update(str(x).encode() + b"\0")
    return h.hexdigest()


@torch.no_grad()
def teacher_logits(teacher_dir: Path, inputs: list, *, images_zip: Path | None = None,
                   batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """The teacher's logits [N, C] (fp32) for texts, or for image members of images_zip; a
    chunked teacher's are, as in predict, the mean of each text's windows' logits."""
    if images_zip is not None:
        net, pre, _ = vision.load_exported(teacher_dir, device)
        tf, out = pre.eval_transform(), []
        with zipfile.ZipFile(images_zip) as zf:
            for b in range(0, len(inputs), batch_size):
                pixels = torch.stack([tf(vision.decode_image(zf.read(m)))
                                      for m in inputs[b: b + batch_size]])
                out.append(net(pixels.to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0)
    model, tokenizer, meta = modeling.load_exported(teacher_dir, device)
    windows = D.text_windows(tokenizer, list(inputs), meta.get("max_length", 128),
                             meta.get("chunking"))
    pad, out = tokenizer.pad_token_id or 0, torch.empty(len(windows), len(meta["labels"]))
    for idx in D.by_length([sum(map(len, w)) for w in windows], batch_size):
        batch = D.collate_windows([windows[i] for i in idx], pad)
        out[idx] = model(**{k: v.to(device) for k, v in batch.items()}).float().cpu()
    return out


class DistillTask:
    """The student's task, with the teacher's cached logits in each training batch's labels."""

    def __init__(self, student: Task, teacher_dir: Path, logits_path: Path,
                 images_zip: Path | None = None):
        self.student, self.teacher_dir = student, Path(teacher_dir)
        self.logits_path, self.images_zip = Path(logits_path), images_zip
        self.feature_stats: dict | None = None
        self.teacher_computed = False  # False: the logits were read from logits_path

    def prepare(self, cfg: TrainConfig, train: D.Examples,
                validation: D.Examples) -> torch.nn.Module:
        self.cfg = cfg
        self.temperature, self.alpha = cfg.hp("temperature"), cfg.hp("alpha")
        copies = cfg.hyperparameters.get("augment_copies") or 0
        if copies and self.images_zip is None:
            mask = getattr(modeling.load_tokenizer(self.teacher_dir), "mask_token", None)
            extra = augment_texts(list(train.inputs), copies, cfg.seed, mask)
            train = D.Examples([*train.inputs, *extra],
                               [*train.labels, *[D.IGNORE_LABEL] * len(extra)])
        model = self.student.prepare(replace(cfg, method="full"), train, validation)
        self.logits = self._cached_logits(list(train.inputs))
        if self.logits.shape != (len(train.inputs), len(cfg.labels)):
            raise ValueError(f"the teacher gives {tuple(self.logits.shape)[1:]} logits per "
                             f"example; the dataset has {len(cfg.labels)} labels")
        return model

    def _cached_logits(self, inputs: list) -> torch.Tensor:
        """Read from logits_path when it holds this teacher's logits for these inputs; else run
        the teacher once and write them there (atomically)."""
        fingerprint = _fingerprint(self.teacher_dir, inputs)
        if self.logits_path.is_file():
            blob = load_file(str(self.logits_path))
            if bytes(blob["fingerprint"].tolist()).decode() == fingerprint:
                return blob["logits"]
        logits = teacher_logits(self.teacher_dir, inputs, images_zip=self.images_zip,
                                batch_size=self.cfg.hp("eval_batch_size"), device=self.cfg.device)
        self.teacher_computed = True
        self.logits_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.logits_path.with_suffix(f".tmp{os.getpid()}")
        save_file({"logits": logits.contiguous(),
                   "fingerprint": torch.tensor(list(fingerprint.encode()), dtype=torch.uint8)},
                  str(tmp))
        os.replace(tmp, self.logits_path)
        return logits

    def batch_list(self, epoch: int) -> list[list[int]]:
        return self.student.batch_list(epoch)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for idx, (inputs, labels) in zip(self.batch_list(epoch)[start:],
                                         self.student.train_batches(epoch, start), strict=True):
            yield inputs, torch.cat([labels[:, None].float(), self.logits[idx]], dim=1)

    def loss(self, logits: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        return distill_loss(logits, packed[:, 1:], packed[:, 0].long(), self.temperature,
                            self.alpha)

    def eval_batches(self) -> Iterator[EvalBatch]:
        return self.student.eval_batches()

    def export(self, model: torch.nn.Module, path: Path, extra: dict) -> None:
        self.student.export(model, path, extra)
