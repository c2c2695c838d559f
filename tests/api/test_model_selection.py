"""POST /v1/model-selection through a real worker: base models ranked by LogME and a k-NN probe
on their frozen features; a head job on the winner then starts from the cached features. And one
short head job on each of the newer bundled base models (mpnet, EfficientNet-Lite0)."""
import base64
import io
import time
import uuid
import zipfile

import pytest
from PIL import Image
from helpers import keys_required, new_key, topics_csv, toy_csv, wait_for_job

from conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("worker")


def wait_for_selection(client, selection_id: str, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sel = client.get(f"/v1/model-selection/{selection_id}").json()
        if sel["status"] in ("succeeded", "failed"):
            return sel
        time.sleep(0.25)
    raise AssertionError(f"model selection {selection_id} did not finish: {sel}")


@pytest.fixture(scope="module")
def reviews(client):
    res = client.post("/v1/datasets", files={"file": ("reviews.csv", toy_csv(80, seed=3))})
    assert res.status_code == 201, res.text
    return res.json()


@pytest.fixture(scope="module")
def topics(client):
    res = client.post("/v1/datasets", files={"file": ("topics.csv", topics_csv())})
    assert res.status_code == 201, res.text
    return res.json()


@pytest.fixture(scope="module")
def digits(client):
    res = client.post("/v1/datasets", files={"file": (
        "digits.zip", (FIXTURES / "digits" / "digits-train.zip").read_bytes())})
    assert res.status_code == 201, res.text
    return res.json()


def test_text_candidates_are_ranked_and_the_winners_head_job_starts_warm(client, topics):
    res = client.post("/v1/model-selection", json={"dataset": topics["id"],
                                                   "candidates": ["tiny-bert", "minilm-l6-v2"]})
    assert res.status_code == 202, res.text
    assert res.json()["status"] == "queued" and res.json()["id"].startswith("msel_")
    sel = wait_for_selection(client, res.json()["id"])
    assert sel["status"] == "succeeded", sel
    ranked = [r["base_model"] for r in sel["results"]]
    # the sentence encoder knows a koala from a tram; a random tiny BERT only sees new words
    assert ranked == ["minilm-l6-v2", "tiny-bert"] and sel["recommended"] == "minilm-l6-v2"
    best = sel["results"][0]
    assert best["rank"] == 1 and best["examples"] == 60 and best["feature_dim"] == 384
    assert best["knn_accuracy"] > 0.75 > sel["results"][1]["knn_accuracy"]
    assert best["seconds"]["total"] >= best["seconds"]["scoring"] > 0

    job = client.post("/v1/jobs", json={"base_model": "minilm-l6-v2", "method": "head",
                                        "training_dataset": topics["id"],
                                        "hyperparameters": {"epochs": 1}}).json()
    assert wait_for_job(client, job["id"])["status"] == "succeeded"
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["data"]
    stats = next(e["data"] for e in events if e["message"].startswith("encoder features"))
    assert stats["computed"] == 0 and stats["examples"] == 60  # every one from the cache

    again = wait_for_selection(client, client.post("/v1/model-selection", json={
        "dataset": topics["id"], "candidates": ["minilm-l6-v2"]}).json()["id"])
    assert again["results"][0]["features_cached"] == 60
    assert again["results"][0]["logme"] == pytest.approx(best["logme"], abs=1e-6)


def test_all_image_base_models_are_ranked(client, digits):
    res = client.post("/v1/model-selection", json={"dataset": digits["id"], "candidates": "all",
                                                   "max_examples": 100})
    assert res.status_code == 202, res.text
    assert {"mobilenet-v2-imagenet", "efficientnet-lite0-imagenet"} <= set(res.json()["candidates"])
    # "all" is every image base model of the tenant: in the whole suite, uploaded ones too
    sel = wait_for_selection(client, res.json()["id"], timeout=900)
    assert sel["status"] == "succeeded", sel
    by_id = {r["base_model"]: r for r in sel["results"]}
    assert set(by_id) == set(res.json()["candidates"])
    assert by_id["efficientnet-lite0-imagenet"]["feature_dim"] == 1280
    assert by_id["mobilenet-v2-imagenet"]["feature_dim"] == 1280
    # ImageNet features tell handwritten digits apart far above chance (0.1: 10 classes)
    for bundled in ("efficientnet-lite0-imagenet", "mobilenet-v2-imagenet"):
        assert by_id[bundled]["knn_accuracy"] > 0.3, sel
    assert all(r["examples"] == 100 for r in sel["results"]), sel
    assert [r["rank"] for r in sel["results"]] == list(range(1, len(sel["results"]) + 1))


@pytest.mark.parametrize("candidates,status,code", [
    (["mobilenet-v2-imagenet"], 422, "task_mismatch"),
    (["no-such-model"], 404, "not_found"),
    ([], 422, "invalid_request"),
])
def test_bad_candidates_are_refused(client, reviews, candidates, status, code):
    res = client.post("/v1/model-selection", json={"dataset": reviews["id"],
                                                   "candidates": candidates})
    assert res.status_code == status, res.text
    assert res.json()["error"]["param"].startswith("candidates")  # [] fails the list's minItems
    if code:
        assert res.json()["error"]["code"] == code


def test_unknown_dataset_and_other_tenants_selections_are_404(client, reviews):
    assert client.post("/v1/model-selection", json={"dataset": "ds_nope"}).status_code == 404
    assert client.get("/v1/model-selection/msel_nope").status_code == 404
    with keys_required():
        owner = new_key(f"owner-{uuid.uuid4().hex[:6]}")[1]
        stranger = new_key(f"other-{uuid.uuid4().hex[:6]}")[1]
        ds = client.post("/v1/datasets", headers=owner,
                         files={"file": ("r.csv", toy_csv(20))}).json()
        sel = client.post("/v1/model-selection", headers=owner,
                          json={"dataset": ds["id"], "candidates": ["tiny-bert"]})
        assert sel.status_code == 202, sel.text
        assert client.get(f"/v1/model-selection/{sel.json()['id']}",
                          headers=stranger).status_code == 404
        assert client.post("/v1/model-selection", headers=stranger,
                           json={"dataset": ds["id"]}).status_code == 404
        assert client.get(f"/v1/model-selection/{sel.json()['id']}",
                          headers=owner).status_code == 200
        assert client.get(f"/v1/model-selection/{sel.json()['id']}").status_code == 401
        assert client.post("/v1/model-selection", json={"dataset": ds["id"]}).status_code == 401


@pytest.fixture(scope="module")
def mpnet_model(client, reviews) -> dict:
    job = client.post("/v1/jobs", json={"base_model": "mpnet-base-v2", "method": "head",
                                        "training_dataset": reviews["id"],
                                        "hyperparameters": {"epochs": 3, "max_length": 16}})
    assert job.status_code == 201, job.text
    done = wait_for_job(client, job.json()["id"], timeout=600)
    assert done["status"] == "succeeded", done
    return done


@pytest.fixture(scope="module")
def lite0_model(client, digits) -> dict:
    job = client.post("/v1/jobs", json={"base_model": "efficientnet-lite0-imagenet",
                                        "method": "head", "training_dataset": digits["id"],
                                        "hyperparameters": {"epochs": 2, "image_size": 96}})
    assert job.status_code == 201, job.text
    done = wait_for_job(client, job.json()["id"], timeout=600)
    assert done["status"] == "succeeded", done
    return done


def test_a_head_job_on_mpnet_learns(client, mpnet_model):
    assert mpnet_model["metrics"]["val_accuracy"] >= 0.75
    pred = client.post(f"/v1/models/{mpnet_model['model']}/predict",
                       json={"inputs": ["a superb, delightful film", "a dull, tedious film"]})
    assert [p["label"] for p in pred.json()["predictions"]] == ["good", "bad"]


def test_a_head_job_on_efficientnet_lite0_learns(client, lite0_model):
    assert lite0_model["metrics"]["val_accuracy"] > 0.3  # 10 classes: chance is 0.1
    model = client.get(f"/v1/models/{lite0_model['model']}").json()
    assert model["base_model"] == "efficientnet-lite0-imagenet"


def _explained_as_predicted(client, model_id: str, body: dict) -> list[dict]:
    """The model's explanations of the inputs, each with the label and score predict gives."""
    why = client.post(f"/v1/models/{model_id}/explain", json={**body, "steps": 8})
    assert why.status_code == 200, why.text
    pred = client.post(f"/v1/models/{model_id}/predict", json=body).json()["predictions"]
    got = why.json()["explanations"]
    assert [e["label"] for e in got] == [p["label"] for p in pred]
    assert [e["score"] for e in got] == pytest.approx([p["score"] for p in pred], abs=1e-4)
    return got


def _distilled(client, teacher: dict, student_base: str, dataset_id: str, hp: dict) -> dict:
    res = client.post("/v1/jobs", json={
        "base_model": student_base, "method": "distill", "teacher": teacher["model"],
        "training_dataset": dataset_id, "seed": 0,
        "hyperparameters": {"temperature": 2.0, "alpha": 0.7, **hp}})
    assert res.status_code == 201, res.text
    job = wait_for_job(client, res.json()["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]
    model = client.get(f"/v1/models/{job['model']}").json()
    c = model["compression"]
    assert model["base_model"] == student_base and c["kind"] == "distill"
    assert c["source_model"] == teacher["model"] and c["params"] < c["source"]["params"]
    return model


def test_an_mpnet_model_explains_and_teaches_a_minilm_student(client, reviews, mpnet_model):
    text = "a superb, delightful film with a dull ending"
    (why,) = _explained_as_predicted(client, mpnet_model["model"], {"inputs": [text]})
    assert [w["word"] for w in why["words"]] == text.split() and not why["truncated"]
    assert all(text[w["start"]:w["end"]] == w["word"] for w in why["words"])
    student = _distilled(client, mpnet_model, "minilm-l6-v2", reviews["id"],
                         {"epochs": 2, "max_length": 16, "learning_rate": 1e-4})
    pred = client.post(f"/v1/models/{student['id']}/predict",
                       json={"inputs": ["a superb, delightful film", "a dull, tedious film"]})
    assert [p["label"] for p in pred.json()["predictions"]] == ["good", "bad"]


def test_an_efficientnet_lite0_model_explains_and_teaches_a_mobilenet_student(client, digits,
                                                                              lite0_model):
    image = digit_pngs(1)[0]
    (why,) = _explained_as_predicted(
        client, lite0_model["model"], {"inputs": [{"image_base64": base64.b64encode(image).decode()}]})
    heat = Image.open(io.BytesIO(base64.b64decode(why["heatmap"]["png_base64"])))
    assert heat.size == Image.open(io.BytesIO(image)).size and heat.getextrema()[1] == 255
    _distilled(client, lite0_model, "mobilenet-v2-imagenet", digits["id"],
               {"epochs": 1, "image_size": 96})


def digit_pngs(n: int) -> list[bytes]:
    """The first n images of the digits training archive."""
    with zipfile.ZipFile(FIXTURES / "digits" / "digits-train.zip") as z:
        names = sorted(x for x in z.namelist() if x.endswith(".png"))[:n]
        return [z.read(x) for x in names]
