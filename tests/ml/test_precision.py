"""Reduced precision is chosen at run time from the hardware, and a bf16 run still learns."""
import torch

from app.ml import precision
from app.ml.config import TrainConfig, resolve_hyperparameters
from test_recipe import text_recipe, toy  # the same separable toy texts


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
