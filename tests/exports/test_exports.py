"""ONNX exports through the API and a real worker: built, measured beside the original on the
validation data, downloaded, run with plain onnxruntime (the README's ten lines) to the labels
predict gives; bad requests are 4xx and keep nothing; a dead worker's export does not stay
running."""
import hashlib
import io
import re
import time
import uuid
import zipfile
from contextlib import redirect_stdout
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import keys_required, new_key, toy_csv, wait_for_job

from app.config import get_settings
from app.db import session_scope
from app.exports import lifecycle
from app.ids import new_id
from app.models import Export, Model
from app.models.base import utcnow
from app.storage import get_storage

ROOT = Path(__file__).resolve().parents[2]


def wait_for_export(client, export_id: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        export = client.get(f"/v1/exports/{export_id}").json()
        if export["status"] in ("succeeded", "failed"):
            return export
        time.sleep(0.25)
    raise AssertionError(f"export {export_id} did not finish in {timeout}s: {export}")


def count_exports() -> int:
    with session_scope() as s:
        return s.query(Export).count()


@pytest.fixture(scope="module")
def model(client, worker) -> dict:
    """A tiny-bert model trained by the worker on a separable two-class dataset."""
    ds = client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(160))}).json()
    job = client.post("/v1/jobs", json={
        "base_model": "tiny-bert", "training_dataset": ds["id"], "validation_split": 0.25,
        "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3}}).json()
    job = wait_for_job(client, job["id"])
    assert job["status"] == "succeeded", job
    return client.get(f"/v1/models/{job['model']}").json()


@pytest.fixture(scope="module")
def fp32_export(client, model) -> dict:
    res = client.post(f"/v1/models/{model['id']}/exports", json={"format": "onnx"})
    assert res.status_code == 202, res.text
    assert res.json()["status"] == "queued" and res.json()["id"].startswith("exp_")
    export = wait_for_export(client, res.json()["id"])
    assert export["status"] == "succeeded", export
    return export


def test_an_int8_export_is_built_measured_and_downloadable(client, model, tmp_path):
    res = client.post(f"/v1/models/{model['id']}/exports",
                      json={"format": "onnx", "quantize": "int8"})
    assert res.status_code == 202
    export = wait_for_export(client, res.json()["id"])
    assert export["status"] == "succeeded", export
    assert (export["model"], export["format"], export["quantize"]) == (model["id"], "onnx", "int8")
    ev = export["evaluation"]
    assert ev["examples"] == 40  # a quarter of 160 held out
    for side in ("original", "export"):
        assert 0 <= ev[side]["accuracy"] <= 1 and 0 <= ev[side]["macro_f1"] <= 1
        assert ev[side]["latency_ms_b1"] > 0 and ev[side]["latency_ms_b32"] > 0
    assert ev["delta"]["accuracy"] == pytest.approx(ev["export"]["accuracy"]
                                                    - ev["original"]["accuracy"])
    assert ev["export"]["size_bytes"] < ev["original"]["size_bytes"]  # int8 weights

    body = client.get(f"/v1/exports/{export['id']}/download")
    assert body.status_code == 200 and body.headers["content-type"] == "application/zip"
    assert len(body.content) == export["size_bytes"]
    assert hashlib.sha256(body.content).hexdigest() == export["sha256"]
    with zipfile.ZipFile(io.BytesIO(body.content)) as z:
        assert {"model.onnx", "tokenizer.json", "labels.json", "README.md"} <= set(z.namelist())

    listed = client.get(f"/v1/models/{model['id']}/exports").json()
    assert export["id"] in [e["id"] for e in listed["data"]]
    nested = client.get(f"/v1/models/{model['id']}/exports/{export['id']}")
    assert nested.status_code == 200 and nested.json() == export

    stored = get_storage().local_path(
        f"exports/{get_settings().default_tenant}/{model['id']}/{export['id']}.zip")
    assert stored.exists()
    deleted = client.delete(f"/v1/exports/{export['id']}")
    assert deleted.status_code == 200
    assert client.get(f"/v1/exports/{export['id']}").status_code == 404
    assert client.get(f"/v1/exports/{export['id']}/download").status_code == 404
    assert not stored.exists()


def test_the_readme_snippet_runs_the_export_to_the_labels_predict_gives(client, model,
                                                                        fp32_export, tmp_path,
                                                                        monkeypatch):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"<!-- onnx-snippet -->\n```python\n(.*?)```\n<!-- /onnx-snippet -->",
                        readme, re.S).group(1)
    assert len(snippet.strip().splitlines()) == 10
    archive = client.get(f"/v1/exports/{fp32_export['id']}/download").content
    (tmp_path / "export.zip").write_bytes(archive)
    monkeypatch.chdir(tmp_path)
    namespace, out = {}, io.StringIO()
    with redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    printed = eval(out.getvalue())  # noqa: S307 - a printed list of label strings
    api = client.post(f"/v1/models/{model['id']}/predict",
                      json={"inputs": namespace["texts"]}).json()
    assert printed == [p["label"] for p in api["predictions"]]
    assert set(printed) <= set(model["labels"])


def test_the_export_agrees_with_the_original_on_the_validation_data(fp32_export):
    ev = fp32_export["evaluation"]
    assert ev["delta"]["agreement"] == 1.0
    assert ev["export"]["accuracy"] == ev["original"]["accuracy"]


def test_an_idempotency_key_replays_the_first_export(client, model, monkeypatch):
    monkeypatch.setattr("app.queue.send_export", lambda _id: True)  # no worker builds it
    key = {"Idempotency-Key": f"exp-{uuid.uuid4().hex}"}
    body = {"format": "onnx", "quantize": "fp16"}
    first = client.post(f"/v1/models/{model['id']}/exports", json=body, headers=key)
    again = client.post(f"/v1/models/{model['id']}/exports", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.get(f"/v1/exports/{first.json()['id']}/download").json()["error"]["code"] \
        == "export_not_ready"
    client.delete(f"/v1/exports/{first.json()['id']}")


@pytest.mark.parametrize("body, param", [
    ({"format": "tflite"}, "format"),
    ({"format": "onnx", "quantize": "int4"}, "quantize"),
    ({"format": "onnx", "quantize": 8}, "quantize"),
    ({}, "format"),
    ({"format": "onnx", "extra": 1}, "extra"),
])
def test_an_unknown_format_or_quantisation_is_422_and_keeps_nothing(client, model, body, param):
    before = count_exports()
    res = client.post(f"/v1/models/{model['id']}/exports", json=body)
    assert res.status_code == 422 and res.json()["error"]["param"] == param, res.json()
    assert count_exports() == before


def test_an_unknown_or_foreign_model_is_404_and_keeps_nothing(client, model):
    before = count_exports()
    res = client.post("/v1/models/mdl_missing/exports", json={"format": "onnx"})
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
    assert client.get("/v1/models/mdl_missing/exports").status_code == 404
    with keys_required():
        stranger = new_key(f"other-{uuid.uuid4().hex[:6]}")[1]
        res = client.post(f"/v1/models/{model['id']}/exports", json={"format": "onnx"},
                          headers=stranger)
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
        assert client.get(f"/v1/models/{model['id']}/exports", headers=stranger).status_code \
            == 404
    assert count_exports() == before


def test_a_model_still_training_is_409_and_keeps_nothing(client, model, monkeypatch):
    """A model made from a checkpoint of a job that is still queued or running."""
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)  # the job stays queued
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset":
                                        client.get(f"/v1/jobs/{model['job']}").json()
                                        ["training_dataset"]}).json()
    with session_scope() as s:
        early = Model(id=new_id("mdl"), tenant_id=get_settings().default_tenant, name="early", task=model["task"],
                      labels=model["labels"], base_model="tiny-bert", job_id=job["id"],
                      checkpoint_id=model["checkpoint"], metrics={}, evaluation=None)
        s.add(early)
    before = count_exports()
    res = client.post(f"/v1/models/{early.id}/exports", json={"format": "onnx"})
    assert res.status_code == 409 and res.json()["error"]["code"] == "model_not_ready"
    assert "still training" in res.json()["error"]["message"]
    assert count_exports() == before
    client.post(f"/v1/jobs/{job['id']}/cancel")
    client.delete(f"/v1/models/{early.id}")


def test_a_dead_workers_export_fails_instead_of_running_forever(client, model, monkeypatch):
    monkeypatch.setattr("app.queue.send_export", lambda _id: True)  # no worker builds it
    export = client.post(f"/v1/models/{model['id']}/exports", json={"format": "onnx"}).json()
    assert lifecycle.claim(export["id"], "gone-host:1", lease_s=60)
    assert lifecycle.expire_leases() == []  # its lease still holds
    assert client.get(f"/v1/exports/{export['id']}").json()["status"] == "running"
    with session_scope() as s:  # the worker died: nobody renews the lease
        s.get(Export, export["id"]).lease_expires_at = utcnow() - timedelta(seconds=1)
    from workers.maintenance import reconcile  # deferred: the worker's maintenance pass

    reconcile()  # (the worker's own pass may get there first: the outcome is the same)
    failed = client.get(f"/v1/exports/{export['id']}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
    # The dead worker's late writes change nothing.
    assert not lifecycle.succeed(export["id"], "gone-host:1", storage_key="x", size_bytes=1,
                                 sha256="0" * 64, evaluation={})
    assert not lifecycle.renew(export["id"], "gone-host:1", 60)
    assert client.get(f"/v1/exports/{export['id']}").json()["status"] == "failed"


def test_deleting_a_model_deletes_its_exports_and_their_archives(client, model, tmp_path):
    with session_scope() as s:
        doomed = Model(id=new_id("mdl"), tenant_id=get_settings().default_tenant, name="doomed",
                       task=model["task"], labels=model["labels"], base_model="tiny-bert",
                       job_id=model["job"], checkpoint_id=model["checkpoint"], metrics={},
                       evaluation=None)
        s.add(doomed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("app.queue.send_export", lambda _id: True)
        export = client.post(f"/v1/models/{doomed.id}/exports", json={"format": "onnx"}).json()
    # as a worker finishes it: the archive stored, the export succeeded
    storage, key = get_storage(), f"exports/{get_settings().default_tenant}/{doomed.id}/a.zip"
    archive = tmp_path / "doomed.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    storage.put_file(key, archive)
    assert lifecycle.claim(export["id"], "test-worker", lease_s=60)
    assert lifecycle.succeed(export["id"], "test-worker", storage_key=key, size_bytes=22,
                             sha256="0" * 64, evaluation={})
    assert storage.exists(key)
    assert client.delete(f"/v1/models/{doomed.id}").status_code == 200
    assert client.get(f"/v1/exports/{export['id']}").status_code == 404
    assert not storage.exists(key)  # no archive outlives its model
