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
the student through far more inputs than the labelled ones. With transfer_texts (a job's
transfer_dataset), real unlabelled texts join it the same way: Hinton et al. 2015's "transfer
set", the usual way to give a student more of a teacher than a small labelled set carries. Those
that are also training or validation texts are left out (the validation figures stay the
student's own), and so are repeats.

With feature_weight β > 0 (text), the student also learns the teacher's sentence embedding: the
teacher's pooled features are cached beside its logits, a linear projection of the student's
pooled features (before dropout) is trained to match them, and β · MSE(P(student), teacher) joins
the loss, as in TinyBERT's hidden-state loss (Jiao et al. 2020) and Reimers & Gurevych 2020's
"Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation": a D-dimensional
target per example instead of C logits. The projection trains with the student (it is in the
resume checkpoints) and is left out of the exported model.

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
from app.ml.modeling_adapt import pool_windows
from app.ml.tasks import Batch, EvalBatch, Task

__all__ = ["DistillTask", "augment_texts", "distill_loss", "feature_loss", "shallow_student",
           "teacher_logits", "teacher_outputs"]


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


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the projected student features and the teacher's [B, D]."""
    return nn.functional.mse_loss(student.float(), teacher.float())


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


def _teacher_only(train: D.Examples, extra: list[str]) -> D.Examples:
    """train with extra texts that have no label (IGNORE_LABEL): the teacher's logits alone."""
    return D.Examples([*train.inputs, *extra], [*train.labels, *[D.IGNORE_LABEL] * len(extra)])


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


def teacher_logits(teacher_dir: Path, inputs: list, *, images_zip: Path | None = None,
                   batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """The teacher's logits [N, C] (fp32) for texts, or for image members of images_zip; a
    chunked teacher's are, as in predict, the mean of each text's windows' logits."""
    return teacher_outputs(teacher_dir, inputs, images_zip=images_zip, batch_size=batch_size,
                           device=device)[0]


@torch.no_grad()
def teacher_outputs(teacher_dir: Path, inputs: list, *, images_zip: Path | None = None,
                    batch_size: int = 64, device: str = "cpu",
                    features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """teacher_logits, and with `features` (text) the teacher's pooled features [N, D] (fp32,
    before its dropout and head; a chunked teacher's: the mean of each text's windows')."""
    if images_zip is not None:
        if features:
            raise ValueError("feature distillation is for text models only")
        net, pre, _ = vision.load_exported(teacher_dir, device)
        tf, out = pre.eval_transform(), []
        with zipfile.ZipFile(images_zip) as zf:
            for b in range(0, len(inputs), batch_size):
                pixels = torch.stack([tf(vision.decode_image(zf.read(m)))
                                      for m in inputs[b: b + batch_size]])
                out.append(net(pixels.to(device)).float().cpu())
        return (torch.cat(out) if out else torch.empty(0)), None
    model, tokenizer, meta = modeling.load_exported(teacher_dir, device)
    windows = D.text_windows(tokenizer, list(inputs), meta.get("max_length", 128),
                             meta.get("chunking"))
    pad, out = tokenizer.pad_token_id or 0, torch.empty(len(windows), len(meta["labels"]))
    feats = torch.empty(len(windows), model.head.in_features) if features else None
    for idx in D.by_length([sum(map(len, w)) for w in windows], batch_size):
        batch = {k: v.to(device) for k, v in D.collate_windows([windows[i] for i in idx],
                                                               pad).items()}
        if feats is None:
            out[idx] = model(**batch).float().cpu()
            continue
        f = pool_windows(model.features(batch["input_ids"], batch["attention_mask"]),
                         batch["doc"])
        out[idx] = model.head(f).float().cpu()  # (eval: its dropout is the identity; the head
        feats[idx] = f.float().cpu()            # is linear: the mean of the windows' logits)
    return out, feats


class DistillTask:
    """The student's task, with the teacher's cached logits (and, with feature_weight, pooled
    features) in each training batch's labels."""

    def __init__(self, student: Task, teacher_dir: Path, logits_path: Path,
                 images_zip: Path | None = None, transfer_texts: tuple[str, ...] = ()):
        if transfer_texts and images_zip is not None:
            raise ValueError("a transfer set is for text students")
        self.student, self.teacher_dir = student, Path(teacher_dir)
        self.transfer_texts = transfer_texts
        self.transfer_used = 0  # transfer texts trained on (after leaving out the known ones)
        self.logits_path, self.images_zip = Path(logits_path), images_zip
        self.feature_stats: dict | None = None
        self.teacher_computed = False  # False: the logits were read from logits_path
        self.features: torch.Tensor | None = None  # the teacher's pooled features (feature_weight)
        self._captured: torch.Tensor | None = None  # the student's, from its last training forward
        self._doc: torch.Tensor | None = None  # that batch's window → text map (chunked texts)

    @property
    def data_report(self) -> dict | None:
        """The student's (texts over max_length), and with a transfer set how much of it is used."""
        report = getattr(self.student, "data_report", None)
        if report is None or not self.transfer_texts:
            return report
        return {**report, "transfer": {"texts": len(self.transfer_texts),
                                       "used": self.transfer_used}}

    def prepare(self, cfg: TrainConfig, train: D.Examples,
                validation: D.Examples) -> torch.nn.Module:
        self.cfg = cfg
        self.temperature, self.alpha = cfg.hp("temperature"), cfg.hp("alpha")
        copies = cfg.hyperparameters.get("augment_copies") or 0
        if copies and self.images_zip is None:
            mask = getattr(modeling.load_tokenizer(self.teacher_dir), "mask_token", None)
            train = _teacher_only(train, augment_texts(list(train.inputs), copies, cfg.seed,
                                                       mask))
        if self.transfer_texts:
            known = {*train.inputs, *(validation.inputs if validation is not None else ())}
            extra = [t for t in dict.fromkeys(self.transfer_texts) if t not in known]
            self.transfer_used = len(extra)
            train = _teacher_only(train, extra)
        self.feature_weight = float(cfg.hyperparameters.get("feature_weight") or 0.0)
        model = self.student.prepare(replace(cfg, method="full"), train, validation)
        self.logits, self.features = self._cached_outputs(list(train.inputs))
        if self.logits.shape != (len(train.inputs), len(cfg.labels)):
            raise ValueError(f"the teacher gives {tuple(self.logits.shape)[1:]} logits per "
                             f"example; the dataset has {len(cfg.labels)} labels")
        if self.features is not None:
            self._learn_features(model)
        return model

    def _learn_features(self, model: torch.nn.Module) -> None:
        """The projection from the student's pooled features to the teacher's, as a submodule
        (so it trains and is saved in resume checkpoints), and a hook that keeps the student's
        pooled features of each training forward (the input of its dropout)."""
        if not isinstance(getattr(model, "head", None), nn.Linear) or not hasattr(model, "dropout"):
            raise ValueError("feature distillation needs a text student")
        model.feature_projection = nn.Linear(model.head.in_features, self.features.shape[1])
        self._projection = model.feature_projection
        self._fit_projection(model)

        def keep(module: nn.Module, args: tuple) -> None:
            if module.training:
                self._captured = args[0]
        model.dropout.register_forward_pre_hook(keep)

    @torch.no_grad()
    def _fit_projection(self, model: torch.nn.Module, ridge: float = 1e-3) -> None:
        """Start the projection at the least-squares map from the student's initial pooled
        features to the teacher's (ridge-regularised, one forward pass over the training
        examples): the feature loss then pulls the encoder towards the teacher's embedding from
        the first step, instead of first training a random map at the student's learning rate.
        (A resumed run does this too; its checkpoint then overwrites the projection.)"""
        was_training, device = model.training, next(model.parameters()).device
        model.eval()
        x = torch.empty(len(self.features), model.head.in_features)
        for idx, (inputs, _) in zip(self.student.batch_list(1), self.student.train_batches(1),
                                    strict=True):
            inputs = {k: v.to(device) for k, v in inputs.items()}
            f = model.features(inputs["input_ids"], inputs["attention_mask"])
            if "doc" in inputs:
                f = pool_windows(f, inputs["doc"])
            x[idx] = f.float().cpu()
        model.train(was_training)
        x = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()  # (the bias)
        gram = x.T @ x
        gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
        w = torch.linalg.solve(gram, x.T @ self.features.double())  # [d_student + 1, d_teacher]
        self._projection.weight.copy_(w[:-1].T.float())
        self._projection.bias.copy_(w[-1].float())

    def _cached_outputs(self, inputs: list) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Read from logits_path when it holds this teacher's outputs for these inputs; else run
        the teacher once and write them there (atomically)."""
        want_features = self.feature_weight > 0
        fingerprint = _fingerprint(self.teacher_dir, [want_features, *inputs])
        if self.logits_path.is_file():
            blob = load_file(str(self.logits_path))
            if bytes(blob["fingerprint"].tolist()).decode() == fingerprint:
                return blob["logits"], blob.get("features")
        logits, features = teacher_outputs(
            self.teacher_dir, inputs, images_zip=self.images_zip,
            batch_size=self.cfg.hp("eval_batch_size"), device=self.cfg.device,
            features=want_features)
        self.teacher_computed = True
        self.logits_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.logits_path.with_suffix(f".tmp{os.getpid()}")
        blob = {"logits": logits.contiguous(),
                "fingerprint": torch.tensor(list(fingerprint.encode()), dtype=torch.uint8)}
        if features is not None:
            blob["features"] = features.contiguous()
        save_file(blob, str(tmp))
        os.replace(tmp, self.logits_path)
        return logits, features

    def batch_list(self, epoch: int) -> list[list[int]]:
        return self.student.batch_list(epoch)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The student's batches, their labels packed with the teacher's outputs: [B, 1 + C]
        (label, logits), or [B, 1 + C + D] with its features."""
        for idx, (inputs, labels) in zip(self.batch_list(epoch)[start:],
                                         self.student.train_batches(epoch, start), strict=True):
            parts = [labels[:, None].float(), self.logits[idx]]
            if self.features is not None:
                parts.append(self.features[idx])
                self._doc = inputs.get("doc")
            yield inputs, torch.cat(parts, dim=1)

    def loss(self, logits: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        c = self.logits.shape[1]
        loss = distill_loss(logits, packed[:, 1: 1 + c], packed[:, 0].long(), self.temperature,
                            self.alpha)
        if self.features is None:
            return loss
        student, self._captured = self._captured, None
        if self._doc is not None:  # windows of chunked texts: their features' mean per text
            student = pool_windows(student, self._doc.to(student.device))
        return loss + self.feature_weight * feature_loss(self._projection(student.float()),
                                                         packed[:, 1 + c:])

    def eval_batches(self) -> Iterator[EvalBatch]:
        return self.student.eval_batches()

    def export(self, model: torch.nn.Module, path: Path, extra: dict) -> None:
        """The student's own export: the feature projection (training only) left out."""
        projection = model._modules.pop("feature_projection", None)
        try:
            self.student.export(model, path, extra)
        finally:
            if projection is not None:
                model.feature_projection = projection
