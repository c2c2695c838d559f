"""Reduced precision is chosen at run time from the hardware and, for training, from a measured
trial of both that changes nothing else; a bf16 run still learns."""
import time

import pytest
import torch

from app.ml import checkpointing, precision
from app.ml import recipe as recipe_module
from app.ml.callbacks import Callback, PeriodicSave
from app.ml.config import TrainConfig, resolve_hyperparameters
from test_recipe import text_recipe, toy
from test_resume import image_recipe  # the same separable toy texts


def test_auto_picks_bf16_only_where_the_hardware_computes_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: False)
    assert precision.autocast_dtype("cpu") is None            # emulated bf16 is slower on CPU
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)
    assert precision.autocast_dtype("cpu") is torch.bfloat16  # AMX
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.autocast_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.autocast_dtype("cuda") is torch.float16  # older GPUs: fp16 for predict …
    assert precision.train_autocast_dtype("cuda") is None     # … but training stays fp32 there
    assert precision.autocast_dtype("cuda", "fp32") is None
    assert precision.autocast_dtype("cpu", "bf16") is torch.bfloat16


def test_a_bf16_autocast_run_learns_like_float32(tiny_model, tmp_path):
    results = {}
    for name in ("fp32", "bf16"):
        cfg = TrainConfig(method="full", labels=["bad", "good"], seed=7, precision=name,
                          hyperparameters=resolve_hyperparameters(
                              "full", {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3}))
        recipe = text_recipe(cfg, tiny_model, tmp_path / name, toy(96, seed=1), toy(32, seed=2))
        recipe.setup()
        assert recipe.autocast_dtype == (torch.bfloat16 if name == "bf16" else None)
        results[name] = recipe.train().state.history[-1]
    assert results["bf16"]["val_accuracy"] >= 0.9
    assert abs(results["bf16"]["val_loss"] - results["fp32"]["val_loss"]) < 0.1
    # the weights themselves stay float32 (autocast casts per op)
    assert all(p.dtype == torch.float32 for p in recipe.model.parameters())


def test_bf16_is_kept_only_where_it_is_measured_faster():
    def step_taking(ms):
        return lambda dtype: time.sleep(ms[dtype] / 1000)

    sync = lambda: None  # noqa: E731
    chosen, times = precision.faster_of(step_taking({None: 4, torch.bfloat16: 1}),
                                        torch.bfloat16, sync, warmup=1, timed=2)
    assert chosen is torch.bfloat16 and times["bf16"] < times["fp32"]
    chosen, times = precision.faster_of(step_taking({None: 1, torch.bfloat16: 4}),
                                        torch.bfloat16, sync, warmup=1, timed=2)
    assert chosen is None and times["fp32"] < times["bf16"]
    # a tie is float32's: reduced precision must pay for its rounding
    assert precision.faster_of(step_taking({None: 3, torch.bfloat16: 3}), torch.bfloat16, sync,
                               warmup=1, timed=2)[0] is None


class Crash(Callback):
    def on_step_end(self, state, control):
        if state.step == 7:
            control.stop("killed")


@pytest.fixture
def measured(monkeypatch):
    """Training as on a GPU with bf16: "auto" times bf16 against float32 on the first batch (the
    real steps run); the choice is forced to bf16 so that the outcome does not depend on timing."""
    monkeypatch.setattr(recipe_module, "train_autocast_dtype",
                        lambda device, setting="auto": torch.bfloat16 if setting != "fp32"
                        else None)
    monkeypatch.setattr(recipe_module, "measured_choice", lambda device: True)
    calls = []

    def bf16_wins(step, candidate, sync):
        calls.append(candidate)
        return torch.bfloat16, precision.faster_of(step, candidate, sync, warmup=1, timed=1)[1]

    monkeypatch.setattr(recipe_module, "faster_of", bf16_wins)
    return calls


def run(tiny_model, work, name, callbacks=(), resume_from=None):
    cfg = TrainConfig(method="full", labels=["bad", "good"], seed=5, precision=name,
                      hyperparameters=resolve_hyperparameters(
                          "full", {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3,
                                   "dropout": 0.2}))
    r = text_recipe(cfg, tiny_model, work / "out", toy(48, seed=1), toy(16, seed=2),
                    callbacks=list(callbacks), resume_dir=work / "resume")
    r.setup(resume_from=resume_from)
    return r


def test_the_precision_trial_leaves_no_trace_and_a_resumed_run_keeps_its_choice(
        tiny_model, tmp_path, measured):
    timed = run(tiny_model, tmp_path / "auto", "auto")
    assert measured == [torch.bfloat16] and timed.autocast_dtype is torch.bfloat16
    assert timed.precision_trial["chosen"] == "bf16"
    assert set(timed.precision_trial["ms_per_step"]) == {"fp32", "bf16"}
    expected = timed.train()
    # the trial's forward and backward passes changed nothing: no weight, gradient or dropout draw
    plain = run(tiny_model, tmp_path / "bf16", "bf16")
    assert plain.precision_trial is None
    got = plain.train()
    a, b = dict(timed.model.named_parameters()), dict(plain.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert got.state.history == expected.state.history

    # killed and resumed: the second attempt trains in the precision the first one measured
    killed = run(tiny_model, tmp_path / "killed", "auto", [PeriodicSave(every_steps=3), Crash()])
    assert killed.train().stop_reason == "killed"
    measured.clear()
    resumed = run(tiny_model, tmp_path / "killed", "auto", [PeriodicSave(every_steps=3)],
                  resume_from=checkpointing.latest(tmp_path / "killed" / "resume"))
    assert measured == [] and resumed.autocast_dtype is torch.bfloat16
    assert resumed.state.precision == "bf16"
    resumed.train()
    c = dict(resumed.model.named_parameters())
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_an_image_trial_restores_the_batch_norm_statistics(tmp_path, measured):
    timed = image_recipe(tmp_path / "auto", [])
    assert measured == [torch.bfloat16] and timed.precision_trial["chosen"] == "bf16"
    timed.train()
    plain = image_recipe(tmp_path / "bf16", [], precision="bf16")
    plain.train()
    a, b = timed.model.state_dict(), plain.model.state_dict()  # running means and variances too
    assert all(torch.equal(a[k], b[k]) for k in a)
