"""Image batches come from a DataLoader (app.ml.image_loader): the number of worker processes
never changes a result, a run resumed mid-epoch with workers ends with the uninterrupted run's
weights, and pinned memory is asked for on CUDA only."""
import random
import zipfile

import pytest
import torch
from torch import nn

from app.ml import checkpointing, image_loader
from app.ml.callbacks import PeriodicSave
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.recipe import BaseModelSpec, build_recipe
from conftest import FIXTURES
from test_resume import Crash

DIGITS = FIXTURES / "digits" / "digits-train.zip"


class TinyNet(nn.Module):
    """A few hundred weights with batch norm and dropout: the training process's own RNG
    (dropout) must be untouched by the augmentation draws."""

    def __init__(self, classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                                 nn.Linear(4, classes))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


def tiny_image_recipe(work, workers, callbacks=(), resume_from=None, epochs=1):
    with zipfile.ZipFile(DIGITS) as zf:
        members = sorted(m for m in zf.namelist() if not m.endswith("/"))
    members = random.Random(0).sample(members, 40)
    labels = sorted({m.split("/")[0] for m in members})
    y = [labels.index(m.split("/")[0]) for m in members]
    hp = resolve_hyperparameters("full", {"epochs": epochs, "batch_size": 6, "image_size": 32,
                                          "augment": 1, "hflip": 1, "calibrate": 0},
                                 "image-classification")
    cfg = TrainConfig(method="full", labels=labels, seed=5, hyperparameters=hp,
                      loader_workers=workers)
    r = build_recipe(cfg, BaseModelSpec("image-classification", None, "mobilenet_v2"),
                     Splits(labels, members[:32], y[:32], members[32:], y[32:]),
                     work_dir=work / "out", images_zip=DIGITS, callbacks=list(callbacks),
                     resume_dir=work / "resume")
    r.task.build = lambda c: TinyNet(len(c.labels))  # seconds, not minutes
    r.setup(resume_from=resume_from)
    r.task.export = lambda model, path, extra: None  # (a TinyNet is no torchvision network)
    return r


def weights(r) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in r.model.state_dict().items()}  # batch-norm buffers too


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_number_of_workers_never_changes_the_batches_or_the_weights(tmp_path):
    runs = {}
    for workers in (0, 2):
        r = tiny_image_recipe(tmp_path / str(workers), workers)
        batches = [(inputs["pixel_values"], labels) for inputs, labels
                   in r.task.train_batches(1, start=2)]
        evals = list(r.task.eval_batches())
        result = r.train()
        runs[workers] = batches, evals, weights(r), result.state.history
    (b0, e0, w0, h0), (b2, e2, w2, h2) = runs[0], runs[2]
    assert len(b0) == len(b2) == 6 - 2  # 32 images in batches of 6, from batch 2
    assert all(torch.equal(x, z) and torch.equal(y, t) for (x, y), (z, t) in zip(b0, b2))
    assert [i for i, _, _ in e0] == [i for i, _, _ in e2]
    assert all(torch.equal(a["pixel_values"], c["pixel_values"])
               for (_, a, _), (_, c, _) in zip(e0, e2))
    assert same(w0, w2) and h0 == h2


def test_augmentation_is_drawn_per_epoch_and_leaves_the_training_rng_alone(tmp_path):
    r = tiny_image_recipe(tmp_path, 0)
    before = torch.get_rng_state()
    one = next(iter(r.task.train_batches(1)))[0]["pixel_values"]
    assert torch.equal(torch.get_rng_state(), before)
    again = next(iter(r.task.train_batches(1)))[0]["pixel_values"]
    assert torch.equal(one, again)  # a function of (seed, epoch, example)
    r.task.batch_list = lambda epoch: r.task.__class__.batch_list(r.task, 1)  # same order
    other = next(iter(r.task.train_batches(2)))[0]["pixel_values"]
    assert not torch.equal(one, other)  # the same images, other draws


def test_a_run_resumed_mid_epoch_with_workers_ends_as_the_uninterrupted_one(tmp_path):
    straight = tiny_image_recipe(tmp_path / "a", 2, epochs=2)
    expected = straight.train()
    killed = tiny_image_recipe(tmp_path / "b", 2, [PeriodicSave(every_steps=4), Crash(9)],
                               epochs=2)
    assert killed.train().stop_reason == "killed"
    last = checkpointing.latest(tmp_path / "b" / "resume")
    assert last.name == "step-00000008"  # mid epoch 2 (6 batches an epoch)
    resumed = tiny_image_recipe(tmp_path / "b", 2, [PeriodicSave(every_steps=4)],
                                resume_from=last, epochs=2)
    result = resumed.train()
    assert same(weights(straight), weights(resumed))
    assert result.state.history == expected.state.history
    assert result.state.step == expected.state.step == 12


def test_a_group_shares_each_batch_with_the_same_draws(tmp_path):
    """Each process of a group takes its slice of every batch, the images drawn as one process
    draws them; a batch too small to share pads with its first image, label ignored."""
    r = tiny_image_recipe(tmp_path, 0)
    whole = list(r.task.train_batches(1))
    shares = []
    for rank in range(2):
        r.task.shard = (rank, 2)
        shares.append(list(r.task.train_batches(1)))
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shares, strict=True):
        assert torch.equal(torch.cat([x0["pixel_values"], x1["pixel_values"]]),
                           x["pixel_values"])
        assert torch.equal(torch.cat([y0, y1]), y)


@pytest.mark.parametrize("device, workers, expected", [
    ("cpu", None, {"num_workers": 0, "pin_memory": False}),
    ("cpu", 2, {"num_workers": 2, "pin_memory": False, "prefetch_factor": 2,
                "persistent_workers": False}),
    ("cuda", 0, {"num_workers": 0, "pin_memory": True}),
    ("cuda:1", 3, {"num_workers": 3, "pin_memory": True, "prefetch_factor": 2,
                   "persistent_workers": False}),
])
def test_pinned_memory_on_cuda_only(device, workers, expected):
    assert image_loader.loader_options(device, workers) == expected


def test_default_workers_leave_a_cpu_to_training_and_none_on_cpu(monkeypatch):
    monkeypatch.setattr(image_loader, "available_cpus", lambda: 16)
    assert image_loader.default_workers("cpu") == 0
    assert image_loader.default_workers("cuda") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four GPU processes share the 16 CPUs
    assert image_loader.default_workers("cuda:2") == 3
    monkeypatch.setattr(image_loader, "available_cpus", lambda: 1)
    assert image_loader.default_workers("cuda") == 0
    assert image_loader.loader_options("cuda", None)["num_workers"] == 0
