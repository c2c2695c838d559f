"""Plain hand-written PyTorch fine-tuning loop: the baseline "adapt" is compared against.

A text classifier = AutoModel backbone + attention-mask mean pooling (how
all-MiniLM-L6-v2 was trained; see its 1_Pooling/config.json) + a Linear head,
trained with cross-entropy, AdamW (weight_decay 0.01), gradients clipped at norm 1.0 (the
service's and Trainer's default) and a linear warmup (10% of steps) / linear decay schedule.  Each batch is tokenised on the
fly (padding=True, truncation=True, max_length) in a seeded shuffled order.
Deliberately no tricks (no length bucketing, no mixed precision, no compile).

    python benchmarks/plain_pytorch_loop.py --train train.csv --heldout heldout.csv \
        --model-dir MODEL_DIR --method full --epochs 1
"""

import argparse
import csv
import json
import math
import time

import torch
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup


def _read(path):
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


class Classifier(torch.nn.Module):
    def __init__(self, model_dir, num_labels, freeze_backbone):
        super().__init__()
        self.backbone = AutoModel.from_pretrained(model_dir)
        self.head = torch.nn.Linear(self.backbone.config.hidden_size, num_labels)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def forward(self, input_ids, attention_mask, **extra):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(pooled)


def run(train_csv, heldout_csv, model_dir, *, method="full", epochs=1, batch_size=16,
        learning_rate=5e-5, max_length=128, seed=42, device="cpu", max_grad_norm=1.0) -> dict:
    if method not in ("full", "head"):
        raise ValueError(f"method must be 'full' or 'head', not {method!r}")
    torch.manual_seed(seed)
    train_texts, train_labels = _read(train_csv)
    heldout_texts, heldout_labels = _read(heldout_csv)
    label_names = sorted(set(train_labels))
    label_id = {name: i for i, name in enumerate(label_names)}
    y_train = torch.tensor([label_id[name] for name in train_labels])

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = Classifier(model_dir, len(label_names), freeze_backbone=(method == "head")).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    total_steps = math.ceil(len(train_texts) / batch_size) * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total_steps), total_steps)
    generator = torch.Generator().manual_seed(seed)

    def encode(texts):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(device) for k, v in enc.items()}

    model.train()
    if method == "head":
        model.backbone.eval()  # frozen backbone: no dropout
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(train_texts), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            logits = model(**encode([train_texts[j] for j in idx]))
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx].to(device))
            loss.backward()
            if max_grad_norm:  # the service (and Trainer) clip at 1.0 by default
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - start

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(heldout_texts), batch_size):
            pred = model(**encode(heldout_texts[i:i + batch_size])).argmax(-1).tolist()
            correct += sum(label_names[p] == t for p, t in zip(pred, heldout_labels[i:i + batch_size]))
    return {
        "samples_per_s": len(train_texts) * epochs / train_seconds,
        "train_seconds": train_seconds,
        "heldout_accuracy": correct / len(heldout_texts),
        "num_train": len(train_texts),
    }


def run_trainer(train_csv, heldout_csv, model_dir, *, method="full", epochs=1, batch_size=16,
                learning_rate=5e-5, max_length=128, seed=42, device="cpu") -> dict:
    """The same model, data and hyperparameters through transformers.Trainer (its defaults:
    AdamW, linear schedule; warmup 10%, weight decay 0.01 and dynamic padding set to match)."""
    import tempfile

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(seed)
    train_texts, train_labels = _read(train_csv)
    heldout_texts, heldout_labels = _read(heldout_csv)
    label_names = sorted(set(train_labels))
    label_id = {name: i for i, name in enumerate(label_names)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(train_texts, truncation=True, max_length=max_length)
    train = [{"input_ids": ids, "attention_mask": m, "labels": label_id[y]}
             for ids, m, y in zip(enc["input_ids"], enc["attention_mask"], train_labels, strict=True)]

    class WithLoss(Classifier):
        def forward(self, input_ids, attention_mask, labels=None, **extra):
            logits = super().forward(input_ids, attention_mask, **extra)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    model = WithLoss(model_dir, len(label_names), freeze_backbone=(method == "head"))
    out_dir = tempfile.mkdtemp(prefix="trainer-")
    args = TrainingArguments(
        output_dir=out_dir, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear",
        seed=seed, save_strategy="no", logging_strategy="no", report_to=[],
        use_cpu=device == "cpu", dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(heldout_texts), batch_size):
            batch = tokenizer(heldout_texts[i:i + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(model.head.weight.device)
            pred = Classifier.forward(model, **batch).argmax(-1).tolist()
            correct += sum(label_names[p] == t for p, t in zip(pred, heldout_labels[i:i + batch_size]))
    return {"samples_per_s": len(train_texts) * epochs / train_seconds,
            "train_seconds": train_seconds, "heldout_accuracy": correct / len(heldout_texts),
            "num_train": len(train_texts)}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Plain PyTorch fine-tuning baseline.")
    ap.add_argument("--train", required=True, help="CSV with text,label columns")
    ap.add_argument("--heldout", required=True, help="CSV with text,label columns")
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--method", choices=("full", "head"), default="full")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    result = run(a.train, a.heldout, a.model_dir, method=a.method, epochs=a.epochs,
                 batch_size=a.batch_size, learning_rate=a.learning_rate,
                 max_length=a.max_length, seed=a.seed, device=a.device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
