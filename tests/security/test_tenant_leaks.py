"""What one tenant can learn of another: /metrics needs an admin key when auth is on and carries
no job ids; event ids are numbered per job (1, 2, 3…), not one global sequence."""
import uuid

import pytest
from helpers import keys_required, new_key, toy_csv



@pytest.fixture
def auth_on():
    with keys_required():
        yield


def key_for(tenant: str, admin: bool = False) -> dict:
    return new_key(tenant, admin, "leaks")[1]


def test_metrics_needs_an_admin_key_when_auth_is_on(client, auth_on):
    assert client.get("/metrics").status_code == 401
    tenant = key_for(f"t-{uuid.uuid4().hex[:6]}")
    res = client.get("/metrics", headers=tenant)
    assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"
    admin = client.get("/metrics", headers=key_for("ops", admin=True))
    assert admin.status_code == 200 and "adapt_jobs" in admin.text
    assert 'job="' not in admin.text  # no job ids in any label


def test_each_tenants_job_numbers_its_events_from_1(client, auth_on, monkeypatch):
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)  # they stay queued
    seen = []
    for tenant in (f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"):
        h = key_for(tenant)
        ds = client.post("/v1/datasets", files={"file": ("e.csv", toy_csv(20))}, headers=h).json()
        for _ in range(2):
            job = client.post("/v1/jobs", headers=h, json={
                "base_model": "tiny-bert", "training_dataset": ds["id"]}).json()
            assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=h).status_code == 200
            events = client.get(f"/v1/jobs/{job['id']}/events", headers=h).json()["data"]
            assert [e["id"] for e in events] == [1, 2], events
            assert [e["message"] for e in events][0] == "job queued"
            later = client.get(f"/v1/jobs/{job['id']}/events", params={"after": 1},
                               headers=h).json()["data"]
            assert [e["id"] for e in later] == [2]
            sse = client.get(f"/v1/jobs/{job['id']}/events", headers={
                **h, "Accept": "text/event-stream", "Last-Event-ID": "1"})
            assert "id: 2\n" in sse.text and "id: 1\n" not in sse.text
            seen.append(events)
    assert len(seen) == 4
