"""Explanations through a real worker on the tiny model: a planted trigger word gets the highest
attribution, every training method explains, and bad requests are clear 4xx."""
import random

import pytest
from helpers import toy_csv, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

TRIGGER = "zqxv"
FILLER = ("the a film movie story plot actor scene was is it and of with very quite rather "
          "some long short old new city night day people music light water").split()


def trigger_csv(n: int = 320, seed: int = 0) -> tuple[bytes, list[str]]:
    """Texts of random filler words; the label is whether the nonsense word is in the text.
    Also returns held-out texts with the trigger (not in the training data)."""
    rng = random.Random(seed)

    def text(with_trigger: bool) -> str:
        words = rng.choices(FILLER, k=rng.randint(5, 10))
        if with_trigger:
            words.insert(rng.randint(0, len(words)), TRIGGER)
        return " ".join(words)

    rows = ["text,label"] + [f"{text(i % 2 == 1)},{'yes' if i % 2 else 'no'}" for i in range(n)]
    return ("\n".join(rows) + "\n").encode(), [text(True) for _ in range(40)]


def train(client, csv: bytes, method: str, hp: dict) -> dict:
    ds = client.post("/v1/datasets", files={"file": ("data.csv", csv)})
    assert ds.status_code == 201, ds.text
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds.json()["id"],
                                        "method": method, "hyperparameters": hp, "seed": 0})
    assert res.status_code == 201, res.text
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture(scope="module")
def trigger_model(client) -> tuple[str, list[str]]:
    csv, heldout = trigger_csv()
    job = train(client, csv, "full", {"epochs": 4, "batch_size": 16, "learning_rate": 3e-3})
    return job["model"], heldout


def test_a_planted_trigger_word_gets_the_highest_attribution(client, trigger_model):
    model, texts = trigger_model
    top, predicted_yes = 0, 0
    for start in range(0, len(texts), 16):
        res = client.post(f"/v1/models/{model}/explain", json={"inputs": texts[start:start + 16]})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["object"] == "explanation" and body["method"] == "integrated_gradients"
        for text, ex in zip(texts[start:start + 16], body["explanations"], strict=True):
            assert ex["target"] == ex["label"]  # no target given: the predicted label
            words = ex["words"]
            assert [w["word"] for w in words] == text.split()
            assert all(text[w["start"]:w["end"]] == w["word"] for w in words)
            best = max(words, key=lambda w: w["score"])
            top += best["word"] == TRIGGER
            predicted_yes += ex["label"] == "yes"
    assert predicted_yes >= 0.9 * len(texts), predicted_yes  # the model learned the trigger
    assert top >= 0.9 * len(texts), f"trigger on top in {top} of {len(texts)}"


def test_predict_with_explain_and_a_chosen_target(client, trigger_model):
    model, texts = trigger_model
    res = client.post(f"/v1/models/{model}/predict",
                      json={"inputs": texts[:2], "explain": True, "target": "no", "steps": 8})
    assert res.status_code == 200, res.text
    preds = res.json()["predictions"]
    assert [p["target"] for p in preds] == ["no", "no"]
    for p in preds:  # toward "no", the trigger is the strongest evidence against
        assert min(p["words"], key=lambda w: w["score"])["word"] == TRIGGER
    plain = client.post(f"/v1/models/{model}/predict", json={"inputs": texts[:2]}).json()
    assert [p["label"] for p in plain["predictions"]] == [p["label"] for p in preds]
    assert "words" not in plain["predictions"][0]


@pytest.mark.parametrize("method,hp", [
    ("head", {"epochs": 1, "batch_size": 32}),
    ("partial", {"epochs": 1, "unfreeze_layers": 1}),
    ("lora", {"epochs": 1, "lora_rank": 4}),
])
def test_every_training_method_explains(client, method, hp):
    job = train(client, toy_csv(64), method, hp)
    text = "great wonderful film  but  dull"
    res = client.post(f"/v1/models/{job['model']}/explain", json={"inputs": [text], "steps": 4})
    assert res.status_code == 200, res.text
    words = res.json()["explanations"][0]["words"]
    assert [(w["word"], w["start"], w["end"]) for w in words] == [
        ("great", 0, 5), ("wonderful", 6, 15), ("film", 16, 20), ("but", 22, 25), ("dull", 27, 31)]
    assert any(w["score"] != 0 for w in words)


@pytest.mark.parametrize("body,status,code,param", [
    ({"inputs": ["a"] * 33}, 422, "too_many_inputs", "inputs"),
    ({"inputs": ["a"], "steps": 129}, 422, "too_many_steps", "steps"),
    ({"inputs": ["a"], "target": "maybe"}, 422, "unknown_label", "target"),
    ({"inputs": [{"image_base64": "aGVsbG8="}]}, 422, "wrong_input_kind", "inputs.0"),
    ({"inputs": []}, 422, None, None),
    ({"inputs": ["a"], "steps": 0}, 422, None, None),
])
def test_bad_explain_requests_are_clear_4xx(client, trigger_model, body, status, code, param):
    model, _ = trigger_model
    res = client.post(f"/v1/models/{model}/explain", json=body)
    assert res.status_code == status, res.text
    err = res.json()["error"]
    if code:
        assert err["code"] == code and err["param"] == param, err
    predict = client.post(f"/v1/models/{model}/predict", json={**body, "explain": True})
    assert predict.status_code == status, predict.text


def test_explaining_an_unknown_model_is_404(client):
    assert client.post("/v1/models/mdl_nope/explain", json={"inputs": ["a"]}).status_code == 404
