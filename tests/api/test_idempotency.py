"""Idempotency-Key: a retried create replays the first response, even under 50 concurrent
identical requests against a real server process; another body with the same key is 409."""
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from helpers import toy_csv, uvicorn_server


@pytest.fixture(scope="module")
def server(environment):
    """The API as uvicorn serves it, in its own process, on a free loopback port."""
    with uvicorn_server() as base:
        yield base


def test_50_concurrent_identical_creates_make_exactly_one_job(client, server, monkeypatch):
    ds = client.post("/v1/datasets", files={"file": ("i.csv", toy_csv(20))}).json()
    body = {"base_model": "tiny-bert", "training_dataset": ds["id"],
            "hyperparameters": {"epochs": 1}, "metadata": {"test": "idempotency"}}
    headers = {"Idempotency-Key": "create-once-50"}

    def post(_):
        return httpx.post(f"{server}/v1/jobs", json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses][:3]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    mine = [j for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]
            if j["metadata"] == {"test": "idempotency"}]
    assert [j["id"] for j in mine] == list(ids)
    replayed = sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses)
    assert replayed == 49


def test_same_key_other_body_is_409_and_no_key_creates_each_time(client):
    ds = client.post("/v1/datasets", files={"file": ("j.csv", toy_csv(20))}).json()
    body = {"base_model": "tiny-bert", "training_dataset": ds["id"]}
    first = client.post("/v1/models", json={"checkpoint": "ckpt_missing"},
                        headers={"Idempotency-Key": "k-404"})
    assert first.status_code == 404  # failures are not stored: the key stays usable
    a = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    b = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    c = client.post("/v1/jobs", json={**body, "seed": 9}, headers={"Idempotency-Key": "k1"})
    assert c.status_code == 409 and c.json()["error"]["code"] == "idempotency_key_reused"
    d, e = (client.post("/v1/jobs", json=body) for _ in range(2))
    assert d.json()["id"] != e.json()["id"]


def test_dataset_upload_with_a_key_is_stored_once(client, environment):
    content = toy_csv(12, seed=42)
    up = [client.post("/v1/datasets", files={"file": ("same.csv", content)},
                      headers={"Idempotency-Key": "upload-1"}) for _ in range(3)]
    assert {r.status_code for r in up} == {201} and len({r.json()["id"] for r in up}) == 1
    stored = [p for p in (environment.data_dir / "blobs" / "datasets").rglob("*")
              if p.is_file() and up[0].json()["id"] in str(p)]
    assert len(stored) == 1
    other = client.post("/v1/datasets", files={"file": ("same.csv", toy_csv(12, seed=43))},
                        headers={"Idempotency-Key": "upload-1"})
    assert other.status_code == 409
