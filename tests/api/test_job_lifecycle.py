"""Jobs through a real Celery worker process on the tiny model: train, watch, predict, download,
cancel — every outcome read back from the API."""
import csv
import io
import zipfile

import pytest
from helpers import toy_csv, wait_for_job
from transformers import AutoModelForSequenceClassification, pipeline

from app.ml.precision import train_autocast_dtype

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def dataset(client):
    return client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(160))}).json()


@pytest.fixture(scope="module")
def finished_job(client, dataset):
    res = client.post("/v1/jobs", json={
        "base_model": "tiny-bert", "training_dataset": dataset["id"], "method": "full",
        "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3},
        "validation_split": 0.25, "suffix": "toy", "seed": 1})
    assert res.status_code == 201, res.text
    return wait_for_job(client, res.json()["id"])


def test_job_succeeds_with_metrics_progress_and_a_model(client, finished_job):
    job = finished_job
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1 and job["started_at"] and job["finished_at"]
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 45
    assert job["progress"]["epoch"] == 3 and job["progress"]["eta_seconds"] == 0
    # the precision it trained in (on a CPU: bf16 only with AMX; a GPU measures both first)
    assert job["progress"]["precision"] == ("bf16" if train_autocast_dtype("cpu") else "fp32")
    assert job["metrics"]["val_accuracy"] >= 0.9  # separable words: the tiny model learns them
    assert job["model"].startswith("mdl_")


def test_metrics_history_is_complete_and_has_no_duplicates(client, finished_job):
    rows = client.get(f"/v1/jobs/{finished_job['id']}/metrics").json()["data"]
    keys = [(r["step"], r["name"]) for r in rows]
    assert len(keys) == len(set(keys))
    evals = [r for r in rows if r["name"] == "val_macro_f1"]
    assert [r["step"] for r in evals] == [15, 30, 45] and [r["epoch"] for r in evals] == [1, 2, 3]
    text = client.get(f"/v1/jobs/{finished_job['id']}/metrics", params={"format": "csv"}).text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(rows) and set(parsed[0]) == {"step", "epoch", "name", "value"}


def test_events_tell_the_story_in_order(client, finished_job):
    events = client.get(f"/v1/jobs/{finished_job['id']}/events").json()["data"]
    messages = [e["message"] for e in events]
    assert messages[0] == "job queued" and messages[-1].startswith("job succeeded")
    assert sum(m.startswith("epoch ") for m in messages) == 3
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    later = client.get(f"/v1/jobs/{finished_job['id']}/events",
                       params={"after": events[2]["id"]}).json()["data"]
    assert later == events[3:]


def test_events_stream_as_server_sent_events(client, finished_job):
    events = client.get(f"/v1/jobs/{finished_job['id']}/events").json()["data"]
    with client.stream("GET", f"/v1/jobs/{finished_job['id']}/events",
                       headers={"Accept": "text/event-stream",
                                "Last-Event-ID": str(events[1]["id"])}) as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        body = "".join(res.iter_text())
    ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    assert ids == [e["id"] for e in events[2:]]  # resumed after Last-Event-ID, then closed


def test_one_checkpoint_per_epoch_and_the_best_is_marked(client, finished_job):
    ckpts = client.get(f"/v1/jobs/{finished_job['id']}/checkpoints").json()["data"]
    assert [c["epoch"] for c in ckpts] == [1, 2, 3]
    best = [c for c in ckpts if c["is_best"]]
    assert len(best) == 1
    assert best[0]["metrics"]["val_macro_f1"] == max(c["metrics"]["val_macro_f1"] for c in ckpts)
    model = client.get(f"/v1/models/{finished_job['model']}").json()
    assert model["checkpoint"] == best[0]["id"] and model["job"] == finished_job["id"]


def test_checkpoint_zip_loads_with_transformers_and_predicts_what_the_api_does(
        client, finished_job, tmp_path):
    """The downloaded ZIP, unzipped: pipeline(trust_remote_code=True) gives the API's top label
    and score for each text; without trust_remote_code, transformers refuses to load it."""
    model = client.get(f"/v1/models/{finished_job['model']}").json()
    res = client.get(f"/v1/checkpoints/{model['checkpoint']}/content")
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(res.content)) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path)
    assert {"config.json", "model.safetensors", "modeling_adapt.py", "adapt.json",
            "modules.json"} <= names
    words = ["superb", "awful", "brilliant", "dull", "great", "boring", "moving", "tedious"]
    texts = [f"{words[i % 8]} {words[(i * 3 + 1) % 8]} film" for i in range(19)] + ["film"]
    api = client.post(f"/v1/models/{finished_job['model']}/predict",
                      json={"inputs": texts}).json()["predictions"]
    clf = pipeline("text-classification", model=str(tmp_path), trust_remote_code=True)
    local = clf(texts)
    assert len(local) == len(api) == 20
    for got, want in zip(local, api, strict=True):
        assert got["label"] == want["label"]
        assert abs(got["score"] - want["score"]) < 1e-4
    assert {p["label"] for p in api} == {"good", "bad"}
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("text-classification", model=str(tmp_path))


def test_predict_and_evaluation(client, finished_job):
    model_id = finished_job["model"]
    res = client.post(f"/v1/models/{model_id}/predict",
                      json={"inputs": ["superb brilliant great film", "dull awful boring film"],
                            "top_k": 2})
    assert res.status_code == 200, res.text
    preds = res.json()["predictions"]
    assert [p["label"] for p in preds] == ["good", "bad"]
    assert all(abs(sum(t["score"] for t in p["top"]) - 1) < 1e-4 for p in preds)
    ev = client.get(f"/v1/models/{model_id}/evaluation").json()
    assert ev["confusion_matrix"]["labels"] == ["bad", "good"]
    assert sum(map(sum, ev["confusion_matrix"]["matrix"])) == 40  # 25% of 160 held out
    assert set(ev["per_class"]) == {"bad", "good"}


def test_concurrent_predicts_each_get_their_own_answers(client, finished_job):
    """Requests gathered into shared forward passes answer exactly what each asked alone."""
    from concurrent.futures import ThreadPoolExecutor

    url = f"/v1/models/{finished_job['model']}/predict"
    words = ["superb", "awful", "brilliant", "dull", "great", "boring", "moving", "tedious"]
    requests = [{"inputs": [f"{words[i % 8]} {words[(i * 3) % 8]} film"] * (1 + i % 3),
                 "top_k": 1 + i % 2} for i in range(24)]
    alone = [client.post(url, json=r).json()["predictions"] for r in requests]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda r: client.post(url, json=r), requests))
    assert all(r.status_code == 200 for r in together)
    for a, t, r in zip(alone, together, requests, strict=True):
        t = t.json()["predictions"]
        assert len(t) == len(r["inputs"]) and [len(p["top"]) for p in t] == [r["top_k"]] * len(t)
        assert [p["label"] for p in t] == [p["label"] for p in a]
        assert all(abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(t, a, strict=True))


@pytest.mark.parametrize("inputs,status", [([], 422), (["x"] * 300, 422), ([""], 422),
                                           ([1, 2], 422)])
def test_predict_with_bad_inputs_is_refused(client, finished_job, inputs, status):
    res = client.post(f"/v1/models/{finished_job['model']}/predict", json={"inputs": inputs})
    assert res.status_code == status and res.json()["error"]["param"].startswith("inputs")


def test_a_model_from_any_checkpoint_and_delete(client, finished_job):
    first = client.get(f"/v1/jobs/{finished_job['id']}/checkpoints").json()["data"][0]
    res = client.post("/v1/models", json={"checkpoint": first["id"], "name": "epoch one"})
    assert res.status_code == 201
    model = res.json()
    assert model["name"] == "epoch one" and model["metrics"] == first["metrics"]
    assert client.post(f"/v1/models/{model['id']}/predict", json={"inputs": ["a"]}).status_code == 200
    assert client.delete(f"/v1/models/{model['id']}").status_code == 200
    assert client.get(f"/v1/models/{model['id']}").status_code == 404


def test_cancelling_a_finished_job_is_409(client, finished_job):
    res = client.post(f"/v1/jobs/{finished_job['id']}/cancel")
    assert res.status_code == 409 and res.json()["error"]["code"] == "job_finished"


def test_a_running_job_cancels_and_frees_its_dataset(client, dataset):
    res = client.post("/v1/jobs", json={
        "base_model": "tiny-bert", "training_dataset": dataset["id"],
        "hyperparameters": {"epochs": 100, "batch_size": 1}})
    job_id = res.json()["id"]
    wait_for_job(client, job_id, until=lambda j: j["progress"]["step"] >= 5)
    conflict = client.delete(f"/v1/datasets/{dataset['id']}")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "dataset_in_use"
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] in ("cancelling", "cancelled")
    job = wait_for_job(client, job_id, timeout=30)
    assert job["status"] == "cancelled" and job["model"] is None
    assert client.get(f"/v1/jobs/{job_id}/events").json()["data"][-1]["message"] == "job cancelled"


def test_a_duplicate_delivery_does_not_run_the_job_twice(client, dataset):
    from app.queue import send_training

    res = client.post("/v1/jobs", json={
        "base_model": "tiny-bert", "training_dataset": dataset["id"],
        "hyperparameters": {"epochs": 1, "batch_size": 16}})
    job_id = res.json()["id"]
    assert send_training(job_id)  # the same task delivered a second time
    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    ckpts = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"]
    assert len(ckpts) == 1
    events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    assert sum(e["message"].startswith("job started") for e in events) == 1


def test_a_job_whose_dataset_file_is_broken_fails_with_a_clear_error(client, environment):
    ds = client.post("/v1/datasets", files={"file": ("b.csv", toy_csv(20))}).json()
    from app.db import session_scope
    from app.models import Dataset

    with session_scope() as s:
        path = environment.data_dir / "blobs" / s.get(Dataset, ds["id"]).storage_key
    path.write_bytes(b"text,label\n\xff\xfe,a\n")  # corrupted on disk after validation
    job_id = client.post("/v1/jobs", json={"base_model": "tiny-bert",
                                           "training_dataset": ds["id"]}).json()["id"]
    job = wait_for_job(client, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "dataset_invalid"
    assert "UTF-8" in job["error"]["message"]


def test_a_second_head_job_on_the_same_data_skips_the_encoder(client, dataset):
    messages = []
    for seed in (1, 2):
        job_id = client.post("/v1/jobs", json={
            "base_model": "tiny-bert", "training_dataset": dataset["id"], "method": "head",
            "seed": seed, "hyperparameters": {"epochs": 2}}).json()["id"]
        assert wait_for_job(client, job_id)["status"] == "succeeded"
        events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
        messages.append(next(e for e in events if e["message"].startswith("encoder features")))
    assert messages[0]["data"]["computed"] > 0
    # Another seed splits the data differently; every example is still in the shared cache.
    assert messages[1]["data"]["computed"] == 0
