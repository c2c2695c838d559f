"""The frozen-encoder feature cache is shared within a tenant, never across tenants: a tenant can't
learn from a cache hit that another tenant trained on given texts."""
import uuid

import pytest
from helpers import events_of

from test_auth_and_isolation import auth_on, make_key, wait_for_job_as  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("worker", "auth_on")


def _csv(texts: list[str]) -> bytes:
    rows = ["text,label"] + [f"{t},{'good' if i % 2 else 'bad'}" for i, t in enumerate(texts)]
    return ("\n".join(rows) + "\n").encode()


def _head_job(client, headers, texts) -> dict:
    """Upload the texts and run a 1-epoch head job on them; the feature-cache event's data."""
    ds = client.post("/v1/datasets", files={"file": ("t.csv", _csv(texts))}, headers=headers)
    assert ds.status_code == 201, ds.text
    return _run(client, headers, ds.json()["id"])


def _run(client, headers, dataset_id) -> dict:
    job = client.post("/v1/jobs", headers=headers, json={
        "base_model": "tiny-bert", "training_dataset": dataset_id, "method": "head",
        "hyperparameters": {"epochs": 1, "batch_size": 8}})
    assert job.status_code == 201, job.text
    done = wait_for_job_as(client, job.json()["id"], headers)
    assert done["status"] == "succeeded", done

    class Authed:
        def get(self, path, **kw):
            return client.get(path, headers=headers, **kw)

    stats = [e["data"] for e in events_of(Authed(), done["id"])
             if e["message"].startswith("encoder features for")]
    assert len(stats) == 1
    return stats[0] | {"dataset": dataset_id}


def test_another_tenants_cache_tells_nothing_and_a_tenants_own_starts_warm(client):
    nonce = uuid.uuid4().hex[:8]
    a = make_key(f"cache-a-{nonce}")["headers"]
    b = make_key(f"cache-b-{nonce}")["headers"]
    secret = [f"confidential memo {nonce} number {i} about the merger" for i in range(30)]

    first = _head_job(client, a, secret)
    assert first["computed"] == first["examples"] == 30

    probe = secret[:5] + [f"variant memo {nonce} number {i} about lunch" for i in range(5)]
    b_stats = _head_job(client, b, probe)
    assert b_stats["examples"] == 10
    assert b_stats["computed"] == 10, "B's job found A's texts in the shared cache"

    again = _run(client, a, first["dataset"])  # the same tenant: still shared
    assert again["examples"] == 30 and again["computed"] == 0
