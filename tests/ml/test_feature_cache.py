"""Head jobs run the frozen encoder once per example: later epochs and later jobs read the shared
feature cache, and the result is the same as recomputing."""
import torch

from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.feature_cache import FeatureCache
from app.ml.data import Splits
from app.ml.recipe import BaseModelSpec, build_recipe
from test_recipe import toy


def run(tiny_model, tmp_path, cache, seed=3, n=96):
    cfg = TrainConfig(method="head", labels=["bad", "good"], seed=seed,
                      hyperparameters=resolve_hyperparameters(
                          "head", {"epochs": 4, "batch_size": 8, "learning_rate": 1e-2}))
    r = build_recipe(cfg, BaseModelSpec("text-classification", tiny_model, namespace="tiny@1"),
                     Splits(["bad", "good"], *toy(n, 1), *toy(32, 2)), work_dir=tmp_path,
                     feature_cache=cache)
    r.setup()
    r.train()
    return r


def test_second_job_skips_the_encoder_and_learns_the_same(tiny_model, tmp_path):
    cache = FeatureCache(tmp_path / "cache", max_bytes=1 << 30)
    first = run(tiny_model, tmp_path / "a", cache)
    assert first.feature_stats["computed"] > 0
    second = run(tiny_model, tmp_path / "b", cache)
    assert second.feature_stats["computed"] == 0  # every example came from the cache
    a, b = dict(first.model.head.named_parameters()), dict(second.model.head.named_parameters())
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert second.state.history[-1]["val_accuracy"] == first.state.history[-1]["val_accuracy"]


def test_a_cached_run_equals_an_uncached_one(tiny_model, tmp_path):
    uncached = run(tiny_model, tmp_path / "u", None)
    cached = run(tiny_model, tmp_path / "c", FeatureCache(tmp_path / "cache", 1 << 30))
    for k, v in uncached.model.head.named_parameters():
        assert torch.allclose(v, dict(cached.model.head.named_parameters())[k], atol=1e-6)


def test_overlapping_data_reuses_what_it_can_and_the_cache_is_bounded(tiny_model, tmp_path):
    cache = FeatureCache(tmp_path / "cache", max_bytes=1 << 30)
    run(tiny_model, tmp_path / "a", cache, n=64)
    bigger = run(tiny_model, tmp_path / "b", cache, n=96)
    assert 0 < bigger.feature_stats["computed"] < bigger.feature_stats["examples"]
    tiny = FeatureCache(tmp_path / "small", max_bytes=1)
    tiny.store("one", {"k": torch.zeros(4)})
    tiny.store("two", {"k": torch.ones(4)})
    assert tiny.load("one") == {} and list(tiny.load("two")) == ["k"]  # LRU evicted "one"


def test_the_encoder_pass_over_training_examples_counts_as_training_time(tiny_model, tmp_path):
    """samples/s of a `head` job includes computing the training examples' features (once, at
    setup), not only the head's steps."""
    cfg = TrainConfig(method="head", labels=["bad", "good"], seed=3,
                      hyperparameters=resolve_hyperparameters("head", {"epochs": 1, "batch_size": 8}))
    r = build_recipe(cfg, BaseModelSpec("text-classification", tiny_model, namespace="tiny@1"),
                     Splits(["bad", "good"], *toy(64, 1), *toy(32, 2)), work_dir=tmp_path,
                     feature_cache=None)
    r.setup()
    stats = r.feature_stats
    assert 0 < stats["train_seconds"] <= stats["seconds"] + 0.01
    assert r.state.elapsed_s == stats["train_seconds"]  # before any step: only the encoder pass
    r.train()
    assert r.state.elapsed_s > stats["train_seconds"]
