"""Creating jobs: every request is checked against the catalog, the datasets and the ranges."""
import pytest
from helpers import toy_csv


@pytest.fixture(scope="module")
def dataset_id(client):
    return client.post("/v1/datasets", files={"file": ("d.csv", toy_csv(20))}).json()["id"]


def create(client, **body):
    return client.post("/v1/jobs", json=body)


def test_base_models_list_the_bundled_minilm_and_local_directories(client):
    data = {m["id"]: m for m in client.get("/v1/base-models").json()["data"]}
    minilm = data["minilm-l6-v2"]
    assert minilm == {"object": "base_model", "id": "minilm-l6-v2",
                      "task": "text-classification", "source": "bundled",
                      "parameters": 22713216, "license": "apache-2.0",
                      "description": minilm["description"]}
    assert data["tiny-bert"]["source"] == "local"


def test_a_valid_job_is_queued_with_resolved_hyperparameters(client, dataset_id, monkeypatch):
    sent = []
    monkeypatch.setattr("app.queue.send_training", lambda job_id, **_: sent.append(job_id))
    res = create(client, base_model="tiny-bert", training_dataset=dataset_id, method="lora",
                 hyperparameters={"epochs": 2, "learning_rate": "auto", "lora_rank": 4},
                 suffix="toy", metadata={"team": "x"}, seed=5)
    assert res.status_code == 201, res.text
    job = res.json()
    assert job["object"] == "job" and job["status"] == "queued" and job["attempts"] == 0
    hp = job["hyperparameters"]
    assert hp["epochs"] == 2 and hp["lora_rank"] == 4 and hp["learning_rate"] == 5e-4
    assert job["metadata"] == {"team": "x"} and job["model"] is None and job["error"] is None
    assert sent == [job["id"]]  # sent once the row committed
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    listed = client.get("/v1/jobs", params={"status": "queued"}).json()["data"]
    assert job["id"] in [j["id"] for j in listed]
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["data"]
    assert [e["message"] for e in events] == ["job queued"]


@pytest.mark.parametrize("body,status,param", [
    ({"base_model": "no-such-model"}, 404, "base_model"),
    ({"training_dataset": "ds_missing"}, 404, "training_dataset"),
    ({"validation_dataset": "ds_missing"}, 404, "validation_dataset"),
    ({"hyperparameters": {"epochs": 0}}, 422, "hyperparameters.epochs"),
    ({"hyperparameters": {"learning_rate": 3.0}}, 422, "hyperparameters.learning_rate"),
    ({"hyperparameters": {"warp_speed": 9}}, 422, "hyperparameters.warp_speed"),
    ({"hyperparameters": {"lora_rank": 8}}, 422, "hyperparameters.lora_rank"),
    ({"method": "magic"}, 422, "method"),
    ({"validation_split": 0.9}, 422, "validation_split"),
    ({"seed": -1}, 422, "seed"),
    ({"unexpected_field": 1}, 422, "unexpected_field"),
    ({"base_model": "someone/some-model"}, 422, "base_model"),
])
def test_bad_job_requests_are_4xx_and_create_nothing(client, dataset_id, body, status, param):
    def job_ids():
        return [j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]]

    before = job_ids()
    res = create(client, **{"base_model": "tiny-bert", "training_dataset": dataset_id, **body})
    assert res.status_code == status, res.text
    assert res.json()["error"]["param"] == param
    assert job_ids() == before


def test_a_base_model_of_another_task_is_refused(client, dataset_id):
    from app.db import session_scope
    from app.models import Dataset

    from app.ids import new_id

    image_ds = new_id("ds")  # a real id: later listings stay in creation order
    with session_scope() as s:  # an image dataset row (image uploads come with their own issue)
        text_ds = s.get(Dataset, dataset_id)
        s.add(Dataset(id=image_ds, tenant_id=text_ds.tenant_id, name="img",
                      task="image-classification", format="zip", bytes=1, sha256="0" * 64,
                      num_examples=2, labels=["a", "b"], class_counts={"a": 1, "b": 1},
                      text_column="", label_column="", storage_key="x", status="ready"))
    res = create(client, base_model="minilm-l6-v2", training_dataset=image_ds)
    assert res.status_code == 422 and res.json()["error"]["code"] == "task_mismatch"


def test_unknown_ids_are_404_on_every_job_route(client):
    for path in ("/v1/jobs/job_x", "/v1/jobs/job_x/events", "/v1/jobs/job_x/metrics",
                 "/v1/jobs/job_x/checkpoints", "/v1/checkpoints/ckpt_x/content",
                 "/v1/models/mdl_x", "/v1/models/mdl_x/evaluation"):
        res = client.get(path)
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found", path
    assert client.post("/v1/jobs/job_x/cancel").status_code == 404
    assert client.post("/v1/models/mdl_x/predict", json={"inputs": ["a"]}).status_code == 404
    assert client.post("/v1/models", json={"checkpoint": "ckpt_x"}).status_code == 404


def test_malformed_json_is_422_not_500(client):
    res = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 422 and "error" in res.json()


def test_operations_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    assert 'adapt_jobs{status="queued"}' in client.get("/metrics").text
    assert "/v1/jobs" in client.get("/openapi.json").json()["paths"]
