"""A run killed mid-epoch and resumed from its last resume checkpoint ends with exactly the weights
of a run that was never interrupted (same seed): weights, optimizer, schedule, RNG, data order."""
import random
import zipfile

import torch

from app.ml import checkpointing
from app.ml.callbacks import Callback, PeriodicSave
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.recipe import BaseModelSpec, build_recipe
from conftest import FIXTURES
from test_recipe import text_recipe, toy


class Crash(Callback):
    """Stands in for SIGKILL: stops the loop at a step without saving anything more."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, state, control):
        if state.step == self.at_step:
            control.stop("killed")


def recipe(tiny_model, work, method, callbacks, early_stopping=None, resume_from=None):
    cfg = TrainConfig(method=method, labels=["bad", "good"], seed=11,
                      hyperparameters=resolve_hyperparameters(
                          method, {"epochs": 3, "batch_size": 8, "learning_rate": 2e-3,
                                   "dropout": 0.2}),
                      early_stopping=early_stopping)
    r = text_recipe(cfg, tiny_model, work / "out", toy(80, 1), toy(24, 2), callbacks=callbacks,
                    resume_dir=work / "resume", keep_last=2)
    r.setup(resume_from=resume_from)
    return r


def run_killed_and_resumed(tiny_model, tmp_path, method, kill_at):
    killed = recipe(tiny_model, tmp_path, method, [PeriodicSave(every_steps=4), Crash(kill_at)])
    assert killed.train().stop_reason == "killed"
    last = checkpointing.latest(tmp_path / "resume")
    assert last is not None and last.name == f"step-{(kill_at // 4) * 4:08d}"
    resumed = recipe(tiny_model, tmp_path, method, [PeriodicSave(every_steps=4)],
                     resume_from=last)
    assert resumed.resumed_step == (kill_at // 4) * 4
    result = resumed.train()
    return resumed, result


def test_full_resumed_mid_epoch_equals_uninterrupted(tiny_model, tmp_path):
    straight = recipe(tiny_model, tmp_path / "a", "full", [PeriodicSave(every_steps=4)])
    expected = straight.train()
    resumed, result = run_killed_and_resumed(tiny_model, tmp_path / "b", "full", kill_at=14)
    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result.state.history == expected.state.history  # every metric, exactly
    assert result.state.step == expected.state.step == 30


def test_lora_resumed_equals_uninterrupted(tiny_model, tmp_path):
    straight = recipe(tiny_model, tmp_path / "a", "lora", [])
    straight.train()
    resumed, _ = run_killed_and_resumed(tiny_model, tmp_path / "b", "lora", kill_at=23)
    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_the_last_k_resume_checkpoints_are_kept_and_tmp_dirs_never_count(tiny_model,
                                                                              tmp_path):
    r = recipe(tiny_model, tmp_path, "head", [PeriodicSave(every_steps=2)])
    r.train()
    kept = sorted(p.name for p in (tmp_path / "resume").iterdir())
    assert kept == ["step-00000028", "step-00000030"]
    (tmp_path / "resume" / ".tmp-step-00000099-1").mkdir()  # a write that was killed
    assert checkpointing.latest(tmp_path / "resume").name == "step-00000030"


def image_recipe(work, callbacks, resume_from=None, precision="auto"):
    """A small slice of the digits ZIP on an untrained mobilenet_v2, augmentation on: resume must
    replay the augmentation draws and the batch-norm statistics."""
    src = FIXTURES / "digits" / "digits-train.zip"
    with zipfile.ZipFile(src) as zf:
        members = sorted(m for m in zf.namelist() if not m.endswith("/"))
    members = random.Random(0).sample(members, 48)
    labels = sorted({m.split("/")[0] for m in members})
    y = [labels.index(m.split("/")[0]) for m in members]
    hp = resolve_hyperparameters("full", {"epochs": 2, "batch_size": 8, "image_size": 32,
                                          "augment": 1, "hflip": 1}, "image-classification")
    cfg = TrainConfig(method="full", labels=labels, seed=3, hyperparameters=hp,
                      precision=precision)
    r = build_recipe(cfg, BaseModelSpec("image-classification", None, "mobilenet_v2"),
                     Splits(labels, members[:32], y[:32], members[32:], y[32:]),
                     work_dir=work / "out", images_zip=src, callbacks=callbacks,
                     resume_dir=work / "resume")
    r.setup(resume_from=resume_from)
    return r


def test_image_resumed_mid_epoch_equals_uninterrupted(tmp_path):
    straight = image_recipe(tmp_path / "a", [])
    expected = straight.train()
    killed = image_recipe(tmp_path / "b", [PeriodicSave(every_steps=3), Crash(7)])
    assert killed.train().stop_reason == "killed"
    last = checkpointing.latest(tmp_path / "b" / "resume")
    resumed = image_recipe(tmp_path / "b", [PeriodicSave(every_steps=3)], resume_from=last)
    assert resumed.resumed_step == 6
    result = resumed.train()
    a, b = straight.model.state_dict(), resumed.model.state_dict()  # batch-norm buffers too
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result.state.history == expected.state.history
