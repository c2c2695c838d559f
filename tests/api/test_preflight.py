"""Dry runs through a real Celery worker: a pre-flight on the worker's device answers with sane
numbers and makes no model; batch_size "auto" lets a real job train with the pre-flight's
answer; unsure predictions come back with a null label."""
import pytest
from helpers import toy_csv, wait_for_job

from app.config import get_settings

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dataset(client):
    return client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(120))}).json()


def job(client, dataset, **body):
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset":
                                        dataset["id"], "method": "full", **body})
    assert res.status_code == 201, res.text
    return res.json()


def test_a_dry_run_returns_sane_numbers_and_creates_no_model(client, dataset):
    created = job(client, dataset, dry_run=True, hyperparameters={"epochs": 2, "batch_size": 8})
    assert created["dry_run"] and created["preflight"] is None
    done = wait_for_job(client, created["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["model"] is None
    models = client.get("/v1/models", params={"limit": 100}).json()["data"]
    assert not [m for m in models if m["job"] == done["id"]]  # (other tests' jobs may make some)
    assert client.get(f"/v1/jobs/{done['id']}/checkpoints").json()["data"] == []
    pf = done["preflight"]
    assert pf["batch_size"] == 8 and pf["device"] == "cpu" and pf["fits"]
    assert 0 < pf["peak_memory_bytes"] < pf["memory_budget_bytes"]
    assert 8 <= pf["max_batch_size"] <= 108  # at least the batch it ran; at most the training rows
    assert pf["steps_per_epoch"] == 14  # 108 training rows (10 % of 120 held out) / 8
    assert 0 < pf["seconds_per_epoch"] < pf["seconds_total"]
    assert pf["seconds_total"] >= 2 * pf["seconds_per_epoch"]  # two epochs, plus setup


def test_dry_runs_do_not_count_against_the_active_jobs_cap(client, dataset, monkeypatch):
    monkeypatch.setattr(get_settings(), "max_active_jobs_per_tenant", 0)
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: True)  # stays queued
    assert client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset":
                                         dataset["id"]}).status_code == 429
    queued = job(client, dataset, dry_run=True)
    assert queued["status"] == "queued"
    client.post(f"/v1/jobs/{queued['id']}/cancel")


def test_batch_size_auto_trains_with_the_preflights_answer(client, dataset):
    created = job(client, dataset, hyperparameters={"epochs": 1, "batch_size": "auto"})
    assert created["hyperparameters"]["batch_size"] == "auto"
    done = wait_for_job(client, created["id"])
    assert done["status"] == "succeeded", done["error"]
    chosen = done["hyperparameters"]["batch_size"]
    assert chosen == min(done["preflight"]["max_batch_size"], get_settings().auto_batch_size_max)
    assert done["progress"]["total_steps"] == -(-108 // chosen)
    ev = client.get(f"/v1/models/{done['model']}/evaluation").json()
    assert ev["calibration"]["temperature"] > 0 and "ece_before" in ev["calibration"]
    assert ev["data"]["longer_than_max_length"] == 0 and not ev["data"]["chunking"]
    # every answer unsure at min_confidence 1: no label, scores and the ranking kept
    res = client.post(f"/v1/models/{done['model']}/predict",
                      json={"inputs": ["superb great film"], "min_confidence": 1.0})
    assert res.status_code == 200, res.text
    pred = res.json()["predictions"][0]
    assert pred["label"] is None and pred["unsure"] is True and len(pred["top"]) == 2
    sure = client.post(f"/v1/models/{done['model']}/predict",
                       json={"inputs": ["superb great film"], "min_confidence": 0.0}).json()
    assert sure["predictions"][0]["unsure"] is False and sure["predictions"][0]["label"]


@pytest.mark.parametrize("body,param", [
    ({"hyperparameters": {"target_precision": 1.5}}, "hyperparameters.target_precision"),
    ({"hyperparameters": {"chunk_overlap": 100}}, "hyperparameters.chunk_overlap"),
    ({"hyperparameters": {"chunking": 2}}, "hyperparameters.chunking"),
    ({"dry_run": "yes"}, "dry_run"),
])
def test_bad_values_are_422(client, dataset, body, param):
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                        "training_dataset": dataset["id"], **body})
    assert res.status_code == 422, res.text
    assert res.json()["error"]["param"] == param
