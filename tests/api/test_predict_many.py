"""POST /v1/predict through a real worker on the tiny model: a fan-out to head and LoRA models
answers what each model's own predict answers, the head models' memory is one backbone plus
their heads (/metrics), and every bad request is a clear 4xx. Image head models on one base
(MobileNetV2) fan out too, with base64 JSON or multipart images, on one shared network."""
import base64

import pytest
from helpers import digit_images, keys_required, new_key, toy_csv, train_digits, wait_for_job
from prometheus_client.parser import text_string_to_metric_families

from app.config import get_settings
from app.db import session_scope
from app.ids import new_id
from app.models import Model
from app.models_api.inference import close_model_cache
from app.ratelimit import limiter

pytestmark = pytest.mark.usefixtures("worker")
TEXTS = ["a moving, beautifully acted film", "a tedious mess", "fine", "great great great"]


def train(client, dataset: str, method: str, seed: int) -> str:
    hp = {"epochs": 1, "batch_size": 16, **({"lora_rank": 4} if method == "lora" else {})}
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": dataset,
                                        "method": method, "hyperparameters": hp, "seed": seed})
    assert res.status_code == 201, res.text
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job["model"]


@pytest.fixture(scope="module")
def models(client) -> dict[str, str]:
    ds = client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(80))}).json()["id"]
    return {"head_a": train(client, ds, "head", 1), "head_b": train(client, ds, "head", 2),
            "lora": train(client, ds, "lora", 3), "full": train(client, ds, "full", 4)}


def clone(model_id: str, **changes) -> str:
    """Another row for the same checkpoint (a model of another base or task, as the database
    records it)."""
    with session_scope() as s:
        row = s.get(Model, model_id)
        fields = {c.name: getattr(row, c.name) for c in Model.__table__.columns
                  if c.name not in ("id", "created_at")}
        copy = Model(**{**fields, **changes, "id": new_id("mdl")})
        s.add(copy)
        s.flush()
        return copy.id


def test_a_fan_out_answers_what_each_single_predict_answers(client, models):
    ids = [models["head_a"], models["lora"], models["head_b"], models["full"]]
    res = client.post("/v1/predict", json={"models": ids, "inputs": TEXTS, "top_k": 2,
                                           "min_confidence": 0.55})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["object"] == "prediction_list" and [d["model"] for d in body["data"]] == ids
    for model_id, got in zip(ids, body["data"], strict=True):
        single = client.post(f"/v1/models/{model_id}/predict",
                             json={"inputs": TEXTS, "top_k": 2, "min_confidence": 0.55}).json()
        assert got["object"] == "prediction" == single["object"]
        for a, b in zip(got["predictions"], single["predictions"], strict=True):
            assert (a["label"], a["unsure"]) == (b["label"], b["unsure"])
            assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_head_models_are_one_backbone_and_their_heads_in_metrics(client, models):
    close_model_cache()
    res = client.post("/v1/predict", json={"models": [models["head_a"], models["head_b"],
                                                      models["full"]], "inputs": TEXTS})
    assert res.status_code == 200, res.text
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    backbones = families["adapt_loaded_backbone_bytes"].samples
    own = {s.labels["model"]: s for s in families["adapt_loaded_model_bytes"].samples}
    assert len(backbones) == 1 and backbones[0].value > 0
    assert own[models["head_a"]].labels["kind"] == "head" == own[models["head_b"]].labels["kind"]
    assert own[models["full"]].labels["kind"] == "whole"
    # a head is tiny next to the backbone; the whole copy carries an encoder of its own
    assert own[models["head_a"]].value * 50 < backbones[0].value <= own[models["full"]].value


@pytest.mark.parametrize("case", ["empty", "duplicate", "too_many", "unknown", "mixed_base",
                                  "image"])
def test_bad_fan_outs_are_clear_4xx(client, models, monkeypatch, case):
    a, b = models["head_a"], models["head_b"]
    body = {"models": [a, b], "inputs": TEXTS}
    if case == "empty":
        body["models"] = []
    elif case == "duplicate":
        body["models"] = [a, b, a]
    elif case == "too_many":
        monkeypatch.setattr(get_settings(), "predict_max_models", 1)
    elif case == "unknown":
        body["models"] = [a, "mdl_nope"]
    elif case == "mixed_base":
        body["models"] = [a, clone(b, base_model="minilm-l6-v2")]
    else:
        body["models"] = [a, clone(b, task="image-classification")]
    res = client.post("/v1/predict", json=body)
    expected = {"empty": (422, None, None), "duplicate": (422, "duplicate_models", "models.2"),
                "too_many": (422, "too_many_models", "models"),
                "unknown": (404, "not_found", "models.1"),
                "mixed_base": (422, "mixed_base_models", "models.1"),
                "image": (422, "unsupported_model_task", "models.1")}[case]
    assert res.status_code == expected[0], res.text
    error = res.json()["error"]
    if expected[1]:
        assert error["code"] == expected[1]
    if expected[2]:
        assert error["param"] == expected[2]
    if case == "unknown":
        assert "mdl_nope" in error["message"]


def test_another_tenants_model_is_not_found(client, models):
    _, headers = new_key("someone-else")
    with keys_required():
        res = client.post("/v1/predict", headers=headers,
                          json={"models": [models["head_a"]], "inputs": TEXTS})
    assert res.status_code == 404, res.text


def test_a_fan_out_spends_the_predict_rate_limit(client, models, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_predict_per_minute", 2)
    monkeypatch.setattr(get_settings(), "rate_limits", "on")  # single-user mode has none
    limiter.reset()
    body = {"models": [models["head_a"], models["head_b"]], "inputs": TEXTS}
    codes = [client.post("/v1/predict", json=body).status_code for _ in range(3)]
    limiter.reset()
    assert codes == [200, 200, 429]


# --- image models ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_models(client) -> dict[str, str]:
    head_a, head_b, partial = train_digits(client, [("head", 1), ("head", 2), ("partial", 3)])
    return {"head_a": head_a, "head_b": head_b, "partial": partial}


def _same(got: dict, want: dict) -> None:
    for a, b in zip(got["predictions"], want["predictions"], strict=True):
        assert (a["label"], a["unsure"]) == (b["label"], b["unsure"])
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]],
                                                               abs=1e-5)


def test_an_image_fan_out_answers_what_each_single_predict_answers(client, image_models):
    images = digit_images()
    ids = [image_models["head_a"], image_models["partial"], image_models["head_b"]]
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(images)]
    multipart = client.post("/v1/predict", files=files,
                            data={"models": ids, "top_k": "3", "min_confidence": "0.2"})
    assert multipart.status_code == 200, multipart.text
    encoded = [{"image_base64": base64.b64encode(b).decode()} for b in images]
    as_json = client.post("/v1/predict", json={"models": ids, "inputs": encoded, "top_k": 3,
                                               "min_confidence": 0.2})
    assert as_json.status_code == 200, as_json.text
    assert [d["model"] for d in multipart.json()["data"]] == ids
    for model_id, got, also in zip(ids, multipart.json()["data"], as_json.json()["data"],
                                   strict=True):
        single = client.post(f"/v1/models/{model_id}/predict", files=files,
                             data={"top_k": "3", "min_confidence": "0.2"})
        assert single.status_code == 200, single.text
        _same(got, single.json())
        _same(also, single.json())


def test_image_head_models_are_one_network_and_their_heads_in_metrics(client, image_models):
    close_model_cache()
    ids = [image_models["head_a"], image_models["head_b"], image_models["partial"]]
    files = [("files", ("0.png", digit_images(1)[0], "image/png"))]
    res = client.post("/v1/predict", files=files, data={"models": ids})
    assert res.status_code == 200, res.text
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    backbones = families["adapt_loaded_backbone_bytes"].samples
    own = {s.labels["model"]: s for s in families["adapt_loaded_model_bytes"].samples}
    assert len(backbones) == 1 and backbones[0].labels["base_model"] == "mobilenet_v2"
    assert own[ids[0]].labels["kind"] == "head" == own[ids[1]].labels["kind"]
    assert own[ids[2]].labels["kind"] == "whole"
    assert own[ids[0]].value * 50 < backbones[0].value <= own[ids[2]].value


@pytest.mark.parametrize("case", ["text_and_image", "mixed_base", "no_files", "texts",
                                  "broken_image"])
def test_bad_image_fan_outs_are_clear_4xx(client, models, image_models, case):
    a, b = image_models["head_a"], image_models["head_b"]
    files = [("files", ("0.png", digit_images(1)[0], "image/png"))]
    data = {"models": [a, b]}
    if case == "text_and_image":
        data["models"] = [models["head_a"], a]
    elif case == "mixed_base":
        data["models"] = [a, clone(b, base_model="efficientnet-lite0-imagenet")]
    elif case == "no_files":
        files = None
    elif case == "broken_image":
        files += [("files", ("1.png", b"not an image", "image/png"))]
    if case == "texts":
        res = client.post("/v1/predict", json={"models": [a, b], "inputs": ["a text"]})
    else:
        res = client.post("/v1/predict", files=files or {"unused": ("", b"")}, data=data)
    expected = {"text_and_image": (422, "unsupported_model_task", "models.1"),
                "mixed_base": (422, "mixed_base_models", "models.1"),
                "no_files": (422, None, "inputs"),
                "texts": (422, None, "inputs.0"),
                "broken_image": (422, None, "inputs.1")}[case]
    assert res.status_code == expected[0], res.text
    error = res.json()["error"]
    assert error["param"] == expected[2]
    if expected[1]:
        assert error["code"] == expected[1]
