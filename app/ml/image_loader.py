"""Image batches for training and evaluation, decoded and augmented off the training loop: a
torch DataLoader whose batch sampler is the job's batch list (the batches' example indices, from
a position on), with worker processes and pinned memory on CUDA, so the GPU does not wait for
the CPU; on a CPU device the batches are made in the training process (worker processes would
only compete with training for the same cores).

Augmentation draws are a function of (job seed, epoch, example index): every example is decoded
with torch's CPU generator seeded from those (inside fork_rng, so the calling process's stream is
untouched). Each example comes once per epoch and the batch list is a function of (seed, epoch),
so this is a function of (seed, epoch, batch index, position) too: the draws are the same with 0,
2 or 4 workers, whatever share of a batch a process of a group takes, and a run resumed at batch
k draws there exactly what the uninterrupted run drew. The training process's own RNG (dropout;
saved in resume checkpoints) is never drawn from: the loader's base seed comes from a generator
of its own.
"""
import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from app.ml import vision
from app.ml.data import MemberList

MAX_AUTO_WORKERS = 8  # more rarely helps one GPU, and each holds decode buffers


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """Worker processes when the setting says "auto": on CUDA, the CPUs this process may use
    (shared among the processes of a group on this machine, torchrun's LOCAL_WORLD_SIZE), less
    one for the training loop, at most MAX_AUTO_WORKERS; on a CPU device none."""
    if torch.device(device).type != "cuda":
        return 0
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, min(MAX_AUTO_WORKERS, available_cpus() // local - 1))


def loader_options(device: str, workers: int | None) -> dict:
    """The DataLoader's keyword arguments for a job on `device` (workers None: default_workers).
    A loader is iterated once (one epoch's batches from a position, or one evaluation), so
    persistent workers would gain nothing; fork starts them cheaply."""
    n = default_workers(device) if workers is None else workers
    if n < 0:
        raise ValueError(f"loader workers must be ≥ 0, not {n}")
    opts: dict = {"num_workers": n, "pin_memory": torch.device(device).type == "cuda"}
    if n:
        opts.update(prefetch_factor=2, persistent_workers=False)
    return opts


def example_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of an example's augmentation draws in an epoch (63 bits)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class ImageExamples(Dataset):
    """Archive members decoded and transformed one by one: (pixels, label index). draws =
    (seed, epoch) seeds each example's random transforms (see the module); None for a
    deterministic transform (evaluation). The archive is opened lazily, once per process: a
    ZipFile handle does not survive a fork (its file offset is shared)."""

    def __init__(self, images_zip: Path, data: MemberList, transform: Callable,
                 draws: tuple[int, int] | None = None):
        self.images_zip, self.data, self.transform, self.draws = (Path(images_zip), data,
                                                                  transform, draws)
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict:  # (spawned workers) the handle stays behind
        return {**self.__dict__, "_zip": None, "_pid": None}

    def _archive(self) -> zipfile.ZipFile:
        if self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.images_zip), os.getpid()
        return self._zip

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = vision.decode_image(self._archive().read(self.data.members[i]))
        if self.draws is None:
            return self.transform(image), self.data.labels[i]
        with torch.random.fork_rng(devices=[]):  # CPU only: CUDA's stream (dropout) untouched
            torch.default_generator.manual_seed(example_seed(*self.draws, i))
            return self.transform(image), self.data.labels[i]


def collate(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[dict[str, torch.Tensor],
                                                                  torch.Tensor]:
    pixels, labels = zip(*items, strict=True)
    return {"pixel_values": torch.stack(pixels)}, torch.tensor(labels)


def image_batches(examples: ImageExamples, batch_list: Sequence[Sequence[int]], *, device: str,
                  workers: int | None, seed: int
                  ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """The batches of batch_list, in its order: (inputs, labels) each. Lazy: the workers start
    at the first batch asked for, and stop when the iteration ends or is dropped."""
    if not batch_list:
        return
    yield from DataLoader(examples, batch_sampler=[list(b) for b in batch_list],
                          collate_fn=collate, generator=torch.Generator().manual_seed(seed),
                          **loader_options(device, workers))
