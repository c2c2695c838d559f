"""The recipe on a tiny model, with nothing else running: learning, reproducibility, methods,
early stopping, cancellation and exported checkpoints."""
import random

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from app.ml.callbacks import Callback
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits, stratified_split
from app.ml.modeling import load_exported
from app.ml.recipe import BaseModelSpec, build_recipe

POS = ["great", "wonderful", "brilliant", "superb", "delightful"]
NEG = ["awful", "boring", "dull", "terrible", "tedious"]


def toy(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        texts.append(" ".join(rng.choices(POS if y else NEG, k=3)) + " film")
        labels.append(y)
    return texts, labels


def text_recipe(cfg, tiny_model, work_dir, train, validation, **kwargs):
    """The recipe as the worker builds it, on the tiny text model; (texts, labels) per side."""
    splits = Splits(list(cfg.labels), *train, *validation)
    return build_recipe(cfg, BaseModelSpec("text-classification", tiny_model), splits,
                        work_dir=work_dir, **kwargs)


def make_recipe(tiny_model, tmp_path, method="full", seed=7, callbacks=None, **hp):
    cfg = TrainConfig(method=method, labels=["bad", "good"], seed=seed,
                      hyperparameters=resolve_hyperparameters(
                          method, {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, **hp}),
                      )
    recipe = text_recipe(cfg, tiny_model, tmp_path, toy(96, seed=1), toy(32, seed=2),
                         callbacks=callbacks or ())
    recipe.setup()
    return recipe


def test_full_finetune_learns_a_separable_task(tiny_model, tmp_path):
    result = make_recipe(tiny_model, tmp_path).train()
    history = result.state.history
    assert len(history) == 3
    assert history[-1]["val_accuracy"] >= 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.best_checkpoint is not None and result.stop_reason is None


def test_same_seed_same_weights_different_seed_different(tiny_model, tmp_path):
    a = make_recipe(tiny_model, tmp_path / "a", seed=3)
    a.train()
    b = make_recipe(tiny_model, tmp_path / "b", seed=3)
    b.train()
    c = make_recipe(tiny_model, tmp_path / "c", seed=4)
    c.train()
    wa, wb, wc = (dict(r.model.named_parameters()) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_head_method_leaves_the_encoder_untouched(tiny_model, tmp_path):
    recipe = make_recipe(tiny_model, tmp_path, method="head", learning_rate=1e-2)
    before = {k: v.clone() for k, v in recipe.model.encoder.state_dict().items()}
    recipe.train()
    after = recipe.model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert recipe.state.history[-1]["val_accuracy"] > 0.5


def test_partial_trains_only_the_last_blocks(tiny_model, tmp_path):
    recipe = make_recipe(tiny_model, tmp_path, method="partial", unfreeze_layers=1)
    trainable = {n for n, p in recipe.model.named_parameters() if p.requires_grad}
    assert any("layer.1." in n for n in trainable)
    assert not any("layer.0." in n or "embeddings" in n for n in trainable)
    assert "head.weight" in trainable


def test_lora_exports_merged_plain_weights(tiny_model, tmp_path):
    recipe = make_recipe(tiny_model, tmp_path, method="lora", lora_rank=4)
    trainable = [n for n, p in recipe.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    result = recipe.train()
    weights = load_file(str(result.best_checkpoint / "model.safetensors"))
    assert not any("lora" in k for k in weights)
    base = load_file(str(tiny_model / "model.safetensors"))
    key = next(k for k in weights if k.endswith("attention.self.query.weight"))
    assert not torch.equal(weights[key], base[key.removeprefix("encoder.")])  # adapter merged in


def test_exported_checkpoint_loads_with_transformers_and_predicts_the_same(tiny_model, tmp_path):
    recipe = make_recipe(tiny_model, tmp_path)
    recipe.train()
    path = recipe.save_checkpoint()  # the final weights (the best may be an earlier epoch)
    hf = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
    assert hf.config.id2label == {0: "bad", 1: "good"}
    model, tok, meta = load_exported(path)
    batch = tok(["superb great film", "dull boring film"], padding=True, return_tensors="pt")
    recipe.model.eval()
    with torch.no_grad():
        expected = recipe.model(batch["input_ids"], batch["attention_mask"])
        got = model(batch["input_ids"], batch["attention_mask"])
        library = hf(**batch).logits
    assert torch.allclose(expected, got, atol=1e-5)
    # the library's logits are calibrated: divided by the temperature fitted on validation data,
    # which the checkpoint records (so pipeline() scores are predict's probabilities)
    temperature = meta["calibration"]["temperature"]
    assert hf.config.calibration_temperature == pytest.approx(temperature)
    assert torch.allclose(expected / temperature, library, atol=1e-5)
    assert meta["labels"] == ["bad", "good"]
    assert got.argmax(-1).tolist() == [1, 0]


class StopAfter(Callback):
    def __init__(self, steps):
        self.steps = steps

    def on_step_end(self, state, control):
        if state.step >= self.steps:
            control.stop("cancelled")


def test_a_cancel_request_stops_between_steps_without_a_checkpoint(tiny_model, tmp_path):
    recipe = make_recipe(tiny_model, tmp_path, callbacks=[StopAfter(3)])
    result = recipe.train()
    assert result.stop_reason == "cancelled"
    assert result.state.step == 3
    assert result.best_checkpoint is None


def test_early_stopping_stops_when_the_metric_stalls(tiny_model, tmp_path):
    cfg = TrainConfig(method="full", labels=["bad", "good"], seed=1,
                      hyperparameters=resolve_hyperparameters(
                          "full", {"epochs": 8, "batch_size": 8, "learning_rate": 1e-7}),
                      early_stopping={"metric": "val_accuracy", "patience": 1})
    recipe = text_recipe(cfg, tiny_model, tmp_path, toy(32, 1), toy(16, 2))
    recipe.setup()
    result = recipe.train()
    # At a learning rate of 1e-7 accuracy cannot move: stop after epoch 1 + patience.
    assert result.stop_reason == "early_stopping"
    assert len(result.state.history) == 2


def test_stratified_split_holds_out_every_class():
    labels = [0] * 50 + [1] * 10 + [2] * 2
    train, val = stratified_split(labels, 0.1, seed=0)
    assert sorted(train + val) == list(range(62))
    assert {labels[i] for i in val} == {0, 1, 2}
    assert stratified_split(labels, 0.1, seed=0) == (train, val)


@pytest.mark.parametrize("given,param", [({"epochs": 0}, "epochs"),
                                          ({"learning_rate": 5}, "learning_rate"),
                                          ({"batch_size": 2.5}, "batch_size"),
                                          ({"lora_rank": 8}, "lora_rank"),
                                          ({"colour": 1}, "colour")])
def test_hyperparameters_out_of_range_are_refused(given, param):
    with pytest.raises(ValueError) as exc:
        resolve_hyperparameters("full", given)
    assert exc.value.args[0] == param


def test_auto_values_resolve_to_numbers():
    hp = resolve_hyperparameters("head", {"epochs": "auto", "batch_size": None})
    assert hp["epochs"] == 5 and hp["batch_size"] == 32 and "lora_rank" not in hp
