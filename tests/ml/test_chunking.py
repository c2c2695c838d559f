"""Long texts: windows that cover a text with the overlap asked for, chosen automatically when
most texts overflow max_length, and a model that finds evidence truncation cannot see — in
training and in the service's predict."""
import random

import pytest
import torch

from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits, encode_windows
from app.ml.modeling import load_tokenizer
from app.ml.modeling_adapt import pool_windows
from app.ml.recipe import BaseModelSpec, build_recipe
from app.models_api.inference import Predictor

FILLER = ["film", "scene", "actor", "story", "plot", "camera", "music", "screen"]


def long_docs(n: int, seed: int) -> tuple[list[str], list[int]]:
    """~150 neutral words, then the deciding words at the end (past the first window)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        word = "wonderful" if i % 2 else "terrible"
        texts.append(" ".join(rng.choices(FILLER, k=150) + [word] * 30))
        labels.append(i % 2)
    return texts, labels


def test_windows_cover_the_text_with_the_overlap(tiny_model):
    tok = load_tokenizer(tiny_model)
    text = " ".join(f"w{i}" for i in range(200))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    windows = encode_windows(tok, [text], [0], 64, 16, 32).windows[0]
    bodies = [w[1:-1] for w in windows]  # [CLS] … [SEP]
    assert all(len(w) <= 64 for w in windows) and len(windows) > 1
    assert sum(bodies, []) != ids  # overlapping, not a partition
    for a, b in zip(bodies, bodies[1:]):
        assert a[-16:] == b[:16]
    assert bodies[0] == ids[:62] and bodies[-1][-1] == ids[-1]  # from the start to the end
    capped = encode_windows(tok, [text], [0], 64, 16, 2).windows[0]
    assert len(capped) == 2  # max_chunks: the rest is cut, as truncation would


def test_pooling_averages_each_texts_windows():
    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    assert pool_windows(logits, torch.tensor([0, 0, 1])).tolist() == [[2.0, 1.0], [5.0, 5.0]]


def train(tiny_model, tmp_path, chunking):
    # head: the frozen encoder's features of every window, averaged per text (the windows'
    # logits are averaged in the model's forward at predict time)
    hp = resolve_hyperparameters("head", {"epochs": 20, "batch_size": 8, "learning_rate": 2e-2,
                                          "max_length": 64, "chunking": chunking,
                                          "chunk_overlap": 16})
    cfg = TrainConfig(method="head", labels=["bad", "good"], seed=0, hyperparameters=hp)
    splits = Splits(cfg.labels, *long_docs(96, 1), *long_docs(32, 2))
    recipe = build_recipe(cfg, BaseModelSpec("text-classification", tiny_model), splits,
                          work_dir=tmp_path / str(chunking))
    recipe.setup()
    result = recipe.train()
    return recipe, result


def test_the_default_overlap_follows_a_short_max_length_and_a_given_one_is_checked():
    """A job with a short max_length and no chunk_overlap is valid (the default overlap shrinks to
    half the window); an overlap the caller gives above that is a clear error."""
    assert resolve_hyperparameters("head", {"max_length": 16})["chunk_overlap"] == 8
    assert resolve_hyperparameters("head", {})["chunk_overlap"] == 32
    with pytest.raises(ValueError, match="at most half of max_length"):
        resolve_hyperparameters("head", {"max_length": 16, "chunk_overlap": 10})


def test_chunking_is_chosen_when_texts_overflow_and_finds_late_evidence(tiny_model, tmp_path):
    chunked, result = train(tiny_model, tmp_path, "auto")
    data = result.best_report["data"]
    assert data["chunking"] and data["chosen"] == "auto"
    assert data["longer_than_max_length"] == data["examples"] == 128
    assert data["truncated_examples"] == 0  # every window fits in max_chunks
    _, truncated = train(tiny_model, tmp_path, 0)
    cut = truncated.best_report["data"]
    assert not cut["chunking"] and cut["truncated_examples"] == 128
    assert truncated.best_metrics["val_accuracy"] <= 0.75  # chance: the evidence was cut off
    assert result.best_metrics["val_accuracy"] >= 0.9
    # predict reads the checkpoint's chunking and gives the same answers on new documents
    texts, labels = long_docs(20, 3)
    with torch.inference_mode():
        preds = Predictor(result.best_checkpoint).probabilities(texts).argmax(-1).tolist()
    assert sum(p == y for p, y in zip(preds, labels)) >= 18


@pytest.mark.parametrize("mode", [0, 1])
def test_the_chunking_hyperparameter_overrides_the_automatic_choice(tiny_model, mode):
    from app.ml.tasks import TextTask

    task = TextTask(tiny_model)
    short = Splits(["a", "b"], ["short text", "another one"], [0, 1], ["tiny"], [0])
    hp = resolve_hyperparameters("full", {"max_length": 64, "chunking": mode})
    task.prepare(TrainConfig(method="full", labels=["a", "b"], hyperparameters=hp),
                 short.train, short.validation)
    assert task.chunking is bool(mode) and task.data_report["longer_than_max_length"] == 0
