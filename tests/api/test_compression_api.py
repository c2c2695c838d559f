"""Distillation and pruning through the API and a real worker on the tiny model: a distilled
student and a pruned model are ordinary models (predict, download) that record their lineage and
their figures beside their source's; every bad request is a clear 4xx that keeps nothing."""
import base64
import io
import zipfile

import pytest
from helpers import keys_required, new_key, toy_csv, wait_for_job

from app.ml.modeling import encoder_blocks, load_exported
from app.ml.modeling_adapt import attention_blocks
from conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dataset(client):
    return client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(160))}).json()


@pytest.fixture(scope="module")
def teacher(client, dataset):
    res = client.post("/v1/jobs", json={
        "base_model": "tiny-bert", "training_dataset": dataset["id"], "method": "full",
        "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3},
        "validation_split": 0.25, "seed": 1})
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return client.get(f"/v1/models/{job['model']}").json()


def distill(client, dataset_id, teacher_id, **extra):
    body = {"base_model": "tiny-bert", "training_dataset": dataset_id, "method": "distill",
            "teacher": teacher_id, "validation_split": 0.25, "seed": 1,
            "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3,
                                "student_layers": 1, "temperature": 2.0, "alpha": 0.7}}
    body.update(extra)
    return client.post("/v1/jobs", json=body)


def test_a_distilled_student_is_an_ordinary_model_that_records_its_teacher(client, dataset,
                                                                           teacher):
    res = distill(client, dataset["id"], teacher["id"])
    assert res.status_code == 201, res.text
    assert res.json()["teacher"] == teacher["id"] and res.json()["method"] == "distill"
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    model = client.get(f"/v1/models/{job['model']}").json()
    assert model["source_model"] == teacher["id"]
    c = model["compression"]
    assert c["kind"] == "distill" and c["source_model"] == teacher["id"]
    assert c["params"] < c["source"]["params"] and c["size_bytes"] < c["source"]["size_bytes"]
    assert c["accuracy"] >= 0.9 and c["latency_ms_b1"] > 0
    assert c["delta"]["accuracy"] == pytest.approx(c["accuracy"] - c["source"]["accuracy"],
                                                   abs=1e-3)
    pred = client.post(f"/v1/models/{model['id']}/predict", json={"inputs": ["a superb film"]})
    assert pred.status_code == 200 and pred.json()["predictions"][0]["label"] == "good"
    listed = client.get(f"/v1/models/{teacher['id']}/descendants").json()["data"]
    assert model["id"] in [m["id"] for m in listed]


def test_augmented_copies_make_each_epoch_longer_and_the_student_still_learns(client, dataset,
                                                                             teacher):
    """(with the feature loss too: the teacher's features of every copy are cached and learnt)"""
    res = distill(client, dataset["id"], teacher["id"], hyperparameters={
        "epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "student_layers": 1,
        "augment_copies": 2, "feature_weight": 1.5})
    assert res.status_code == 201, res.text
    hp = res.json()["hyperparameters"]
    assert (hp["augment_copies"], hp["feature_weight"]) == (2, 1.5)
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    # 120 training reviews and 2 copies of each, taught by the teacher: 360 a epoch, 45 batches
    assert job["progress"]["total_steps"] == 2 * 45 == job["progress"]["step"]
    model = client.get(f"/v1/models/{job['model']}").json()
    assert model["compression"]["accuracy"] >= 0.9


def test_a_transfer_set_is_labelled_by_the_teacher_and_its_own_labels_are_not_read(
        client, dataset, teacher):
    # labels that are not the teacher's (x / y): they are never read
    rows = toy_csv(200, seed=5).decode().replace(",good\n", ",x\n").replace(",bad\n", ",y\n")
    transfer = client.post("/v1/datasets", files={"file": ("more.csv", rows.encode())}).json()
    assert sorted(transfer["labels"]) == ["x", "y"]
    res = distill(client, dataset["id"], teacher["id"], transfer_dataset=transfer["id"])
    assert res.status_code == 201, res.text
    assert res.json()["transfer_dataset"] == transfer["id"]
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    known = {line.rsplit(",", 1)[0] for line in toy_csv(160).decode().splitlines()[1:]}
    fresh = {line.rsplit(",", 1)[0] for line in rows.splitlines()[1:]} - known
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["data"]
    said = [e for e in events if e["message"].startswith("transfer set")]
    assert said and said[0]["data"] == {"texts": 200, "used": len(fresh)}
    # 120 training reviews plus the fresh texts, in batches of 8, for 2 epochs
    assert job["progress"]["total_steps"] == 2 * -(-(120 + len(fresh)) // 8)
    model = client.get(f"/v1/models/{job['model']}").json()
    assert model["compression"]["accuracy"] >= 0.9 and model["labels"] == ["bad", "good"]


def test_a_transfer_set_a_running_job_reads_cannot_be_deleted(client, dataset, teacher):
    transfer = client.post("/v1/datasets", files={"file": ("t.csv", toy_csv(40, seed=8))}).json()
    res = distill(client, dataset["id"], teacher["id"], transfer_dataset=transfer["id"],
                  hyperparameters={"epochs": 50, "batch_size": 1, "student_layers": 1})
    job = wait_for_job(client, res.json()["id"], until=lambda j: j["progress"]["step"] >= 1)
    conflict = client.delete(f"/v1/datasets/{transfer['id']}")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "dataset_in_use"
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert wait_for_job(client, job["id"])["status"] == "cancelled"
    assert client.delete(f"/v1/datasets/{transfer['id']}").status_code in (200, 204)


def test_a_pruned_model_has_half_the_ffn_and_heads_and_reloads_from_its_download(
        client, teacher, tmp_path):
    res = client.post(f"/v1/models/{teacher['id']}/prune",
                      json={"target": {"ffn": 0.5, "heads": 0.5}, "retrain_epochs": 1})
    assert res.status_code == 201, res.text
    assert (res.json()["method"], res.json()["source_model"]) == ("prune", teacher["id"])
    assert res.json()["hyperparameters"]["prune_ffn"] == 0.5
    assert res.json()["hyperparameters"]["prune_heads"] == 0.5
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    model = client.get(f"/v1/models/{job['model']}").json()
    assert model["compression"]["kind"] == "prune"
    assert model["compression"]["params"] < model["compression"]["source"]["params"]
    blob = client.get(f"/v1/checkpoints/{model['checkpoint']}/content").content
    zipfile.ZipFile(io.BytesIO(blob)).extractall(tmp_path)
    reloaded, _, _ = load_exported(tmp_path)
    assert reloaded.encoder.config.intermediate_size == 32 and len(
        encoder_blocks(reloaded.encoder)) == 2
    # the tiny BERT's 2 heads of 16, halved: one head per layer
    assert [attn.query.out_features for attn, _ in attention_blocks(reloaded.encoder)] == [16, 16]
    pred = client.post(f"/v1/models/{model['id']}/predict", json={"inputs": ["a dull film"]})
    assert pred.status_code == 200, pred.text


def _jobs(client) -> set[str]:
    return {j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]}


@pytest.fixture(scope="module")
def other_labels(client):
    rows = "text,label\n" + "".join(f"text {i},{'abc'[i % 3]}\n" for i in range(30))
    return client.post("/v1/datasets", files={"file": ("abc.csv", rows.encode())}).json()


@pytest.fixture(scope="module")
def images(client):
    blob = (FIXTURES / "digits" / "digits-train.zip").read_bytes()
    return client.post("/v1/datasets", files={"file": ("digits.zip", blob)}).json()


def test_an_image_model_prunes_its_channels_and_reloads_from_its_download(client, images,
                                                                          tmp_path):
    from app.ml.vision import load_exported as load_vision

    job = wait_for_job(client, client.post("/v1/jobs", json={
        "base_model": "mobilenet-v2-imagenet", "training_dataset": images["id"],
        "method": "head", "seed": 0,
        "hyperparameters": {"image_size": 48, "epochs": 2, "learning_rate": 3e-3}}).json()["id"])
    assert job["status"] == "succeeded", job["error"]
    for body, param in (({"target": {"ffn": 0.5}}, "target.ffn"),
                        ({"target": {"heads": 0.5}}, "target.heads"),
                        ({"target": {}}, "target.channels")):
        res = client.post(f"/v1/models/{job['model']}/prune", json=body)
        assert res.status_code == 422 and res.json()["error"]["param"] == param, res.text
    res = client.post(f"/v1/models/{job['model']}/prune",
                      json={"target": {"channels": 0.3}, "retrain_epochs": 1})
    assert res.status_code == 201, res.text
    hp = res.json()["hyperparameters"]
    assert hp["prune_channels"] == 0.3 and "prune_ffn" not in hp and hp["image_size"] == 48
    pruned = wait_for_job(client, res.json()["id"])
    assert pruned["status"] == "succeeded", pruned["error"]
    model = client.get(f"/v1/models/{pruned['model']}").json()
    c = model["compression"]
    assert c["kind"] == "prune" and c["params"] < 0.8 * c["source"]["params"]
    blob = client.get(f"/v1/checkpoints/{model['checkpoint']}/content").content
    zipfile.ZipFile(io.BytesIO(blob)).extractall(tmp_path)
    net, _, meta = load_vision(tmp_path)
    assert meta["channels_pruned"] and sum(p.numel() for p in net.parameters()) == c["params"]
    with zipfile.ZipFile(FIXTURES / "digits" / "digits-heldout.zip") as zf:
        first = next(n for n in zf.namelist() if n.endswith(".png"))
        image = zf.read(first)
    pred = client.post(f"/v1/models/{model['id']}/predict",
                       json={"inputs": [{"image_base64": base64.b64encode(image).decode()}]})
    assert pred.status_code == 200 and pred.json()["predictions"][0]["label"] in model["labels"]


@pytest.fixture(scope="module")
def cancelled_job(client, dataset):
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                        "training_dataset": dataset["id"]})
    client.post(f"/v1/jobs/{res.json()['id']}/cancel")
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "cancelled"
    return job


def test_bad_distill_requests_are_4xx_and_keep_nothing(client, environment, dataset, teacher,
                                                       other_labels, images, cancelled_job):
    cases = [
        (dict(teacher="mdl_nope"), 404, "teacher", None),
        (dict(teacher=None), 422, "teacher", None),
        (dict(teacher=cancelled_job["id"]), 409, "teacher", "model_not_ready"),
        (dict(training_dataset=other_labels["id"]), 422, "teacher", "labels_mismatch"),
        (dict(training_dataset=images["id"], base_model="mobilenet-v2-imagenet",
              hyperparameters={"epochs": 1}), 422, "teacher", "task_mismatch"),
        (dict(hyperparameters={"student_layers": 3}), 422, "hyperparameters.student_layers",
         None),
        (dict(hyperparameters={"temperature": 0.0}), 422, "hyperparameters.temperature", None),
        (dict(hyperparameters={"alpha": 2}), 422, "hyperparameters.alpha", None),
        (dict(hyperparameters={"augment_copies": 51}), 422, "hyperparameters.augment_copies",
         None),
        (dict(training_dataset=images["id"], base_model="mobilenet-v2-imagenet",
              hyperparameters={"augment_copies": 2}), 422, "hyperparameters.augment_copies",
         None),
        (dict(hyperparameters={"feature_weight": -1}), 422, "hyperparameters.feature_weight",
         None),
        (dict(training_dataset=images["id"], base_model="mobilenet-v2-imagenet",
              hyperparameters={"feature_weight": 1}), 422, "hyperparameters.feature_weight",
         None),
        (dict(method="full", hyperparameters={"epochs": 1}), 422, "teacher", None),
        (dict(transfer_dataset="ds_nope"), 404, "transfer_dataset", None),
        (dict(transfer_dataset=images["id"]), 422, "transfer_dataset", "task_mismatch"),
        (dict(method="full", teacher=None, hyperparameters={"epochs": 1},
              transfer_dataset=dataset["id"]), 422, "transfer_dataset", None),
    ]
    before, files = _jobs(client), set(environment.data_dir.rglob("*"))
    for extra, status, param, code in cases:
        body = dict(extra)
        res = distill(client, body.pop("training_dataset", dataset["id"]),
                      body.pop("teacher", teacher["id"]), **body)
        assert res.status_code == status, (extra, res.text)
        err = res.json()["error"]
        assert err["param"] == param and (code is None or err["code"] == code), (extra, err)
        assert err["message"]
    assert _jobs(client) == before
    assert {p for p in set(environment.data_dir.rglob("*")) - files if "jobs" in p.parts} == set()


def test_a_teacher_of_another_tenant_is_404_like_a_missing_one(client, teacher):
    with keys_required():
        _, bob = new_key("bob-compress")
        data = client.post("/v1/datasets", files={"file": ("t.csv", toy_csv(40))},
                           headers=bob).json()
        res = client.post("/v1/jobs", headers=bob, json={
            "base_model": "tiny-bert", "training_dataset": data["id"], "method": "distill",
            "teacher": teacher["id"]})
        assert res.status_code == 404 and res.json()["error"]["param"] == "teacher"
        pruned = client.post(f"/v1/models/{teacher['id']}/prune", headers=bob,
                             json={"target": {"ffn": 0.5}})
        assert pruned.status_code == 404
        assert client.get("/v1/jobs", headers=bob).json()["data"] == []


@pytest.mark.parametrize("body,status,param", [
    ({"target": {"ffn": 1.0}}, 422, None), ({"target": {"ffn": -0.1}}, 422, None),
    ({"target": {"ffn": 0.0}}, 422, "target"), ({"target": {}}, 422, "target"),
    ({"target": {"heads": 1.0}}, 422, None), ({"target": {"heads": "half"}}, 422, None),
    ({"target": {"ffn": 0.5, "layers": 1}}, 422, None),
    ({"target": {"ffn": 0.5}, "retrain_epochs": 0}, 422, None),
])
def test_bad_prune_targets_are_422_and_keep_nothing(client, teacher, body, status, param):
    before = _jobs(client)
    res = client.post(f"/v1/models/{teacher['id']}/prune", json=body)
    assert res.status_code == status, res.text
    assert param is None or res.json()["error"]["param"] == param
    assert _jobs(client) == before


def test_pruning_an_unknown_or_unfinished_model_is_refused(client, cancelled_job):
    assert client.post("/v1/models/mdl_nope/prune",
                       json={"target": {"ffn": 0.5}}).status_code == 404
    res = client.post(f"/v1/models/{cancelled_job['id']}/prune", json={"target": {"ffn": 0.5}})
    assert res.status_code == 409 and res.json()["error"]["code"] == "model_not_ready"
