"""Temperature scaling after training: on a dataset where the model is plainly overconfident,
the calibrated probabilities have a lower expected calibration error on held-out examples, and
the answers it calls unsure are less often right than the ones it is sure of."""
import pytest
import torch

from app.ml.calibration import calibrate, expected_calibration_error, fit_temperature, unsure
from app.ml.config import resolve_hyperparameters
from app.models_api.inference import _top, mark_unsure


def overconfident(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a 3-class model whose true class probabilities are softmax(z) but which
    reports 4·z: right as often as softmax(z) says, far surer than that."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g) * 1.5
    labels = torch.multinomial(z.softmax(-1), 1, generator=g).squeeze(-1)
    return 4 * z, labels


def test_the_fitted_temperature_undoes_the_overconfidence():
    logits, labels = overconfident(4000, 0)
    assert fit_temperature(logits, labels) == pytest.approx(4.0, rel=0.1)


def test_ece_is_lower_after_calibration_on_held_out_data():
    val_logits, val_labels = overconfident(1500, 1)
    test_logits, test_labels = overconfident(1500, 2)
    report = calibrate(val_logits, val_labels, ["a", "b", "c"])
    t = report["temperature"]
    before = expected_calibration_error(test_logits.softmax(-1), test_labels)
    after = expected_calibration_error((test_logits / t).softmax(-1), test_labels)
    assert after < before / 2
    assert report["ece_after"] < report["ece_before"]  # the cross-fitted figure says so too


def test_unsure_answers_are_less_accurate_than_sure_ones():
    val_logits, val_labels = overconfident(1500, 3)
    logits, labels = overconfident(1500, 4)
    t = calibrate(val_logits, val_labels, ["a", "b", "c"])["temperature"]
    probs = (logits / t).softmax(-1)
    preds = mark_unsure(_top(probs, ["a", "b", "c"], [3] * len(labels)), 0.7, None)
    right = (probs.argmax(-1) == labels).tolist()
    sure = [r for r, p in zip(right, preds) if not p["unsure"]]
    doubtful = [r for r, p in zip(right, preds) if p["unsure"]]
    assert sure and doubtful
    assert sum(doubtful) / len(doubtful) < sum(sure) / len(sure) - 0.2
    assert all(p["label"] is None for p in preds if p["unsure"])
    assert all(p["label"] is not None and p["score"] >= 0.7 for p in preds if not p["unsure"])


def test_learned_thresholds_reach_the_target_precision():
    val_logits, val_labels = overconfident(3000, 5)
    report = calibrate(val_logits, val_labels, ["a", "b", "c"], target_precision=0.9)
    thresholds = report["thresholds"]
    probs = (val_logits / report["temperature"]).softmax(-1)
    kept = [not u for u in unsure(probs, None, [thresholds[n] for n in "abc"])]
    pred = probs.argmax(-1)
    for c in range(3):
        mine = [i for i in range(len(pred)) if kept[i] and pred[i] == c]
        assert mine and (val_labels[mine] == c).float().mean() >= 0.9


@pytest.mark.parametrize("given,param", [({"target_precision": 0.2}, "target_precision"),
                                         ({"calibrate": 2}, "calibrate"),
                                         ({"chunk_overlap": 100, "max_length": 128},
                                          "chunk_overlap"),
                                         ({"max_chunks": 0}, "max_chunks")])
def test_out_of_range_calibration_and_chunking_values_are_refused(given, param):
    with pytest.raises(ValueError) as err:
        resolve_hyperparameters("full", given)
    assert err.value.args[0] == param


def test_image_jobs_take_calibration_but_not_chunking():
    hp = resolve_hyperparameters("head", {"target_precision": 0.8}, "image-classification")
    assert hp["target_precision"] == 0.8 and "chunking" not in hp
    with pytest.raises(ValueError):
        resolve_hyperparameters("head", {"chunking": 1}, "image-classification")
