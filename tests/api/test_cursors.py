"""A cursor (`after`) names a row of the list it pages: an unknown id, or another tenant's, is a
400 `invalid_cursor` on every list route (the same answer for both), never a silent first page."""
import uuid

import pytest
from helpers import keys_required, new_key, toy_csv

from app.db import session_scope
from app.ids import new_id
from app.models import Checkpoint, Model


@pytest.fixture
def auth_on():
    with keys_required():
        yield


def key_for(tenant: str) -> dict:
    return new_key(tenant, name="cursors")[1]


def a_model_row(tenant: str, job_id: str) -> str:
    """A model row of the tenant's (no training: only its id matters to a cursor)."""
    with session_scope() as s:
        ckpt = Checkpoint(id=new_id("ckpt"), tenant_id=tenant, job_id=job_id, step=1, epoch=1,
                          metrics={}, bytes=0, storage_key="none")
        s.add(ckpt)
        s.flush()
        model = Model(id=new_id("mdl"), tenant_id=tenant, name="m", task="text-classification",
                      labels=["a", "b"], base_model="tiny-bert", job_id=job_id,
                      checkpoint_id=ckpt.id, metrics={})
        s.add(model)
        return model.id


def assert_invalid_cursor(res):
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["code"] == "invalid_cursor" and err["param"] == "after"
    return err


@pytest.mark.parametrize("path", ["/v1/datasets?after=ds_bogus", "/v1/jobs?after=job_bogus",
                                  "/v1/jobs?status=queued&after=job_bogus",
                                  "/v1/models?after=mdl_bogus", "/v1/webhooks?after=wh_bogus"])
def test_an_unknown_cursor_is_a_400(client, path):
    assert_invalid_cursor(client.get(path))


def test_a_known_cursor_still_pages(client, monkeypatch):
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)
    ds = [client.post("/v1/datasets", files={"file": ("c.csv", toy_csv(20))}).json()["id"]
          for _ in range(2)]
    page = client.get("/v1/datasets", params={"limit": 1, "after": ds[1]}).json()["data"]
    assert page and page[0]["id"] <= ds[0]
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds[0]}).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    # a cursor stays valid under a status filter it no longer matches
    assert client.get("/v1/jobs", params={"status": "queued", "after": job["id"]}).status_code == 200


def test_a_foreign_tenants_id_answers_as_an_unknown_one(client, auth_on, monkeypatch):
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)
    tenant_a = f"a-{uuid.uuid4().hex[:6]}"
    a, b = key_for(tenant_a), key_for(f"b-{uuid.uuid4().hex[:6]}")
    ds = client.post("/v1/datasets", files={"file": ("c.csv", toy_csv(20))}, headers=a).json()
    job = client.post("/v1/jobs", headers=a, json={"base_model": "tiny-bert",
                                                    "training_dataset": ds["id"]}).json()
    wh = client.post("/v1/webhooks", headers=a, json={"url": "https://example.com/hook",
                                                      "events": ["job.succeeded"]})
    assert wh.status_code == 201, wh.text
    wh = wh.json()
    mdl = a_model_row(tenant_a, job["id"])
    for route, own in (("/v1/datasets", ds["id"]), ("/v1/jobs", job["id"]),
                       ("/v1/webhooks", wh["id"]), ("/v1/models", mdl)):
        assert client.get(route, params={"after": own}, headers=a).status_code == 200
        foreign = assert_invalid_cursor(client.get(route, params={"after": own}, headers=b))
        prefix = own.split("_")[0]
        unknown = assert_invalid_cursor(client.get(route, params={"after": f"{prefix}_bogus"},
                                                   headers=b))
        assert foreign == unknown
    deliveries = f"/v1/webhooks/{wh['id']}/deliveries"
    assert client.get(deliveries, headers=a).status_code == 200
    assert_invalid_cursor(client.get(deliveries, params={"after": "dlv_bogus"}, headers=a))
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=a)  # no worker should ever run it
