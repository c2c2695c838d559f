"""Training data: label indexing and a seeded stratified split, texts tokenised once and padded
per batch, image archive members, and the batch orders of each epoch."""
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, validation): each class gives round(fraction·n) rows, at least one when it
    has two or more, so every class is both trained on and measured."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[y].append(i)
    rng = random.Random(seed)
    train, val = [], []
    for y in sorted(by_class):
        idx = by_class[y][:]
        rng.shuffle(idx)
        n_val = round(len(idx) * fraction)
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return sorted(train), sorted(val)


@dataclass(frozen=True)
class Examples:
    """One side of a split: inputs (texts, or image archive members) and label indices."""

    inputs: list
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    """Label names (index = class id) and the training and validation examples."""

    labels: list[str]
    train_x: list
    train_y: list[int]
    val_x: list
    val_y: list[int]

    @property
    def train(self) -> Examples:
        return Examples(self.train_x, self.train_y)

    @property
    def validation(self) -> Examples:
        return Examples(self.val_x, self.val_y)


def labelled_splits(names: list[str], train_inputs: list, train_labels: list[str],
                    val_inputs: list | None, val_labels: list[str] | None, fraction: float,
                    seed: int) -> Splits:
    """Index the labels by `names` and split: a seeded stratified split of the training set when
    there is no validation set (val_inputs None), else the validation set as given.

    Raises ValueError (a message fit for the user) when a label is not among `names`, i.e. when
    validation labels do not occur in training."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(train_labels) - set(index))
    if unknown:
        raise ValueError(f"Training labels not in the dataset's label set: {unknown[:5]}")
    y = [index[label] for label in train_labels]
    if val_inputs is None:
        tr, va = stratified_split(y, fraction, seed)
        return Splits(list(names), [train_inputs[i] for i in tr], [y[i] for i in tr],
                      [train_inputs[i] for i in va], [y[i] for i in va])
    if val_labels is None or len(val_labels) != len(val_inputs):
        raise ValueError("validation inputs and labels differ in length")
    unknown = sorted(set(val_labels) - set(index))
    if unknown:
        raise ValueError(f"Validation labels not in training: {unknown[:5]}")
    return Splits(list(names), list(train_inputs), y, list(val_inputs),
                  [index[label] for label in val_labels])


@dataclass
class EncodedTexts:
    """Token ids per example (unpadded, truncated) and label indices."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FeatureData:
    """Frozen-encoder features per example (one row each) and label indices."""

    features: torch.Tensor
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class MemberList:
    """Images by their name in the dataset archive, and label indices."""

    members: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int) -> EncodedTexts:
    """Tokenise every text once; batches pad only to their own longest example."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return EncodedTexts(input_ids=ids, labels=list(labels))


def collate(examples: list[list[int]], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Token ids padded to the batch's longest, rounded up to `multiple` (on a GPU, few distinct
    shapes: each new one costs kernel selection and attention plans), with the attention mask."""
    longest = -(-max(len(x) for x in examples) // multiple) * multiple
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, ids in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch: a function of (seed, epoch) only, so a resumed run
    replays exactly the order the uninterrupted run would have seen."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int,
                  lengths: Sequence[int] | None = None, bucket: int = 50) -> list[list[int]]:
    """The batches of one epoch, as example indices; a function of (seed, epoch) only.

    With `lengths`, batches are length-bucketed: the shuffled order is cut into spans of
    `bucket` batches, each span is sorted by length and cut into batches (so a batch pads to
    about its own examples' length), and the batches are shuffled again. Which examples meet in
    a span, and the order batches are seen in, stay random every epoch."""
    order = epoch_order(n, seed, epoch)
    if lengths is None:
        return chunks(order, batch_size)
    span = batch_size * bucket
    out = []
    for c in range(0, n, span):
        out += chunks(sorted(order[c: c + span], key=lambda i: lengths[i]), batch_size)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)
    return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]


def shard_batches(batch_list: Sequence[Sequence[int]], rank: int,
                  world: int) -> tuple[list[list[int]], list[bool]]:
    """Process `rank`'s share of each batch (of `world` processes): a contiguous slice, the sizes
    differing by one at most, so the global batches and their order, a function of (seed, epoch),
    stay those of one process and a resume position (the batch index) means the same in both.
    A batch with fewer examples than processes leaves some shares empty: those get the batch's
    first example as padding, flagged True (its loss must not count), so every process still
    takes part in the step's gradient all-reduce."""
    if world == 1:
        return [list(b) for b in batch_list], [False] * len(batch_list)
    out, pad = [], []
    for b in batch_list:
        part = list(b[len(b) * rank // world: len(b) * (rank + 1) // world])
        out.append(part or list(b[:1]))
        pad.append(not part)
    return out, pad


IGNORE_LABEL = -100  # cross_entropy's ignore_index: a padding example's label


def without_padding(batches: Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]],
                    pad: Sequence[bool]) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """The batches with every label of a padding batch (see shard_batches) set to IGNORE_LABEL."""
    for (inputs, labels), is_pad in zip(batches, pad, strict=True):
        yield inputs, torch.full_like(labels, IGNORE_LABEL) if is_pad else labels


def chunks(order: Sequence[int], size: int) -> list[list[int]]:
    return [list(order[b: b + size]) for b in range(0, len(order), size)]


def by_length(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Evaluation batches: every example once, similar lengths together."""
    return chunks(sorted(range(len(lengths)), key=lambda i: lengths[i]), size)


def batches(data: EncodedTexts, batch_list: Sequence[Sequence[int]], pad_id: int,
            start: int = 0, multiple: int = 1
            ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Yield (inputs, labels) for the batches of batch_list, starting at batch index start."""
    for idx in batch_list[start:]:
        inputs = collate([data.input_ids[i] for i in idx], pad_id, multiple)
        yield inputs, torch.tensor([data.labels[i] for i in idx], dtype=torch.long)


def feature_batches(data: FeatureData, batch_list: Sequence[Sequence[int]],
                    start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    for idx in batch_list[start:]:
        idx = torch.tensor(idx, dtype=torch.long)
        yield {"features": data.features[idx]}, torch.tensor([data.labels[i] for i in idx.tolist()])


# -- long texts: overlapping windows ----------------------------------------------------------
@dataclass
class WindowedTexts:
    """Each example as one or more overlapping windows of token ids (special tokens included),
    and label indices: a long text is read whole instead of cut at max_length."""

    windows: list[list[list[int]]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def token_counts(tokenizer, texts: Sequence[str]) -> list[int]:
    """Each text's length in tokens, special tokens included (no truncation)."""
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False,
                    verbose=False)["input_ids"]
    extra = tokenizer.num_special_tokens_to_add()
    return [len(x) + extra for x in ids]


def split_windows(tokenizer, texts: Sequence[str], max_length: int, overlap: int,
                  max_chunks: int, **fields) -> tuple[dict, list[list[int]]]:
    """The tokenizer's windows of the texts: max_length tokens each (special tokens included),
    each sharing `overlap` tokens with the one before (its own overflow with stride), and per
    text the rows of its first max_chunks windows (the text's rest is cut, as truncation would).
    `fields`: what else the tokenizer returns per window (offsets, special-tokens masks)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, stride=overlap,
                    return_overflowing_tokens=True, **fields)
    rows: list[list[int]] = [[] for _ in texts]
    for row, owner in enumerate(enc["overflow_to_sample_mapping"]):
        if len(rows[owner]) < max_chunks:
            rows[owner].append(row)
    return enc, rows


def encode_windows(tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int,
                   overlap: int, max_chunks: int) -> WindowedTexts:
    """Every text as its windows (split_windows)."""
    enc, rows = split_windows(tokenizer, texts, max_length, overlap, max_chunks)
    return WindowedTexts([[enc["input_ids"][r] for r in rs] for rs in rows], list(labels))


def text_windows(tokenizer, texts: Sequence[str], max_length: int,
                 chunking: dict | None) -> list[list[list[int]]]:
    """Each text's token ids as a model reads them: one window cut at max_length, or (chunking:
    {"overlap", "max_chunks"}, as a checkpoint's adapt.json records it) the overlapping windows
    it was trained with."""
    if chunking:
        return encode_windows(tokenizer, texts, [0] * len(texts), max_length,
                              chunking["overlap"], chunking["max_chunks"]).windows
    return [[x] for x in tokenizer(list(texts), truncation=True,
                                   max_length=max_length)["input_ids"]]


def collate_windows(windows: Sequence[Sequence[list[int]]],
                    pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """The windows of some texts in one padded batch, and `doc`: which text each row belongs to
    (the model averages the rows' logits per text)."""
    flat = [(row, w) for row, ws in enumerate(windows) for w in ws]
    inputs = collate([w for _, w in flat], pad_id, multiple)
    inputs["doc"] = torch.tensor([row for row, _ in flat], dtype=torch.long)
    return inputs


def window_batches(data: WindowedTexts, batch_list: Sequence[Sequence[int]], pad_id: int,
                   start: int = 0, multiple: int = 1
                   ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Every window of the batch's examples in one padded tensor, with `doc` (collate_windows)."""
    for idx in batch_list[start:]:
        yield (collate_windows([data.windows[i] for i in idx], pad_id, multiple),
               torch.tensor([data.labels[i] for i in idx], dtype=torch.long))
