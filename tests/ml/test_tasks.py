"""build_recipe picks the task component from the base model's task; labelled_splits indexes the
labels and splits as the worker did, refusing validation labels that training lacks."""
import pytest

from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits, labelled_splits, stratified_split
from app.ml.recipe import BaseModelSpec, Recipe, build_recipe
from app.ml.tasks import ImageTask, TextTask
from conftest import FIXTURES

SPLITS = Splits(["a", "b"], ["x", "y"], [0, 1], ["z"], [1])


def cfg(task="text-classification", labels=("a", "b")):
    return TrainConfig(method="head", labels=list(labels),
                       hyperparameters=resolve_hyperparameters("head", {}, task))


def test_a_text_spec_gets_the_text_task(tiny_model, tmp_path):
    recipe = build_recipe(cfg(), BaseModelSpec("text-classification", tiny_model, namespace="t@1"),
                          SPLITS, work_dir=tmp_path, precompute_features=False)
    assert isinstance(recipe, Recipe) and isinstance(recipe.task, TextTask)
    assert recipe.task.feature_namespace == "t@1" and not recipe.task.precompute_features
    default = build_recipe(cfg(), BaseModelSpec("text-classification", tiny_model), SPLITS,
                           work_dir=tmp_path)
    assert default.task.feature_namespace == str(tiny_model)  # as before: the directory


def test_an_image_spec_gets_the_image_task(tmp_path):
    zip_path = FIXTURES / "digits" / "digits-train.zip"
    recipe = build_recipe(cfg("image-classification"),
                          BaseModelSpec("image-classification", None, "mobilenet_v2"), SPLITS,
                          work_dir=tmp_path, images_zip=zip_path)
    assert isinstance(recipe.task, ImageTask) and recipe.task.images_zip == zip_path
    assert recipe.task.architecture == "mobilenet_v2" and recipe.task.weights_path is None
    with pytest.raises(ValueError, match="images_zip"):
        build_recipe(cfg("image-classification"),
                     BaseModelSpec("image-classification", None, "mobilenet_v2"), SPLITS,
                     work_dir=tmp_path)


def test_unknown_tasks_and_mismatched_labels_are_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        build_recipe(cfg(), BaseModelSpec("token-classification", tiny_model), SPLITS,
                     work_dir=tmp_path)
    with pytest.raises(ValueError, match="differ"):
        build_recipe(cfg(labels=["b", "a"]), BaseModelSpec("text-classification", tiny_model),
                     SPLITS, work_dir=tmp_path)
    filled = build_recipe(cfg(labels=()), BaseModelSpec("text-classification", tiny_model),
                          SPLITS, work_dir=tmp_path)
    assert filled.cfg.labels == ["a", "b"]


def test_labelled_splits_without_validation_is_the_stratified_split():
    names = ["neg", "pos", "odd"]
    labels = ["neg"] * 10 + ["pos"] * 6 + ["odd"] * 2
    inputs = [f"text {i}" for i in range(len(labels))]
    s = labelled_splits(names, inputs, labels, None, None, 0.2, seed=5)
    y = [names.index(label) for label in labels]
    tr, va = stratified_split(y, 0.2, 5)
    assert s.labels == names
    assert (s.train_x, s.train_y) == ([inputs[i] for i in tr], [y[i] for i in tr])
    assert (s.val_x, s.val_y) == ([inputs[i] for i in va], [y[i] for i in va])
    assert (s.train.inputs, s.validation.labels) == (s.train_x, s.val_y)


def test_labelled_splits_takes_a_validation_set_and_refuses_unknown_labels():
    s = labelled_splits(["neg", "pos"], ["a", "b", "c"], ["pos", "neg", "pos"],
                        ["d", "e"], ["neg", "pos"], 0.2, seed=0)
    assert (s.train_x, s.train_y, s.val_x, s.val_y) == (["a", "b", "c"], [1, 0, 1], ["d", "e"],
                                                        [0, 1])
    with pytest.raises(ValueError, match=r"Validation labels not in training: \['maybe'\]"):
        labelled_splits(["neg", "pos"], ["a", "b"], ["pos", "neg"], ["d", "e"],
                        ["maybe", "pos"], 0.2, seed=0)
