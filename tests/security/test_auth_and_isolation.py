"""Keys and tenants, route by route: no key → 401, a revoked key → 401, another tenant's ids → 404
everywhere (downloads, event streams and predict included), never a 403 that leaks existence."""
import pytest
from helpers import keys_required, new_key, toy_csv, wait_for_job

from app.config import get_settings
from app.db import session_scope
from app.keys import service as keys
from app.ratelimit import limiter

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def auth_on():
    with keys_required():
        yield


def make_key(tenant: str, admin: bool = False) -> dict:
    key_id, headers = new_key(tenant, admin)
    return {"id": key_id, "headers": headers}


@pytest.fixture(scope="module")
def alice(auth_on):
    return make_key("alice")


@pytest.fixture(scope="module")
def bob(auth_on):
    return make_key("bob")


@pytest.fixture(scope="module")
def alice_objects(client, alice):
    """A dataset, a finished job, its checkpoint and model, all Alice's."""
    h = alice["headers"]
    ds = client.post("/v1/datasets", files={"file": ("a.csv", toy_csv(40))}, headers=h).json()
    job = client.post("/v1/jobs", headers=h, json={
        "base_model": "tiny-bert", "training_dataset": ds["id"],
        "hyperparameters": {"epochs": 1, "batch_size": 8}}).json()
    job = wait_for_job_as(client, job["id"], h)
    ckpt = client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=h).json()["data"][0]
    return {"dataset": ds["id"], "job": job["id"], "checkpoint": ckpt["id"], "model": job["model"]}


def wait_for_job_as(client, job_id, headers):
    class Authed:
        def get(self, path, **kw):
            return client.get(path, headers=headers, **kw)

    return wait_for_job(Authed(), job_id)


def routes(o: dict) -> list[tuple[str, str, dict]]:
    """(method, path, request kwargs) for every route that touches a tenant's object."""
    return [
        ("GET", f"/v1/datasets/{o['dataset']}", {}),
        ("DELETE", f"/v1/datasets/{o['dataset']}", {}),
        ("GET", f"/v1/jobs/{o['job']}", {}),
        ("POST", f"/v1/jobs/{o['job']}/cancel", {}),
        ("GET", f"/v1/jobs/{o['job']}/events", {}),
        ("GET", f"/v1/jobs/{o['job']}/events", {"headers": {"Accept": "text/event-stream"}}),
        ("GET", f"/v1/jobs/{o['job']}/metrics", {}),
        ("GET", f"/v1/jobs/{o['job']}/metrics?format=csv", {}),
        ("GET", f"/v1/jobs/{o['job']}/checkpoints", {}),
        ("GET", f"/v1/checkpoints/{o['checkpoint']}/content", {}),
        ("GET", f"/v1/models/{o['model']}", {}),
        ("GET", f"/v1/models/{o['model']}/evaluation", {}),
        ("POST", f"/v1/models/{o['model']}/predict", {"json": {"inputs": ["hello"]}}),
        ("DELETE", f"/v1/models/{o['model']}", {}),
        ("POST", "/v1/models", {"json": {"checkpoint": o["checkpoint"]}}),
        ("POST", "/v1/jobs", {"json": {"base_model": "tiny-bert",
                                       "training_dataset": o["dataset"]}}),
    ]


LIST_ROUTES = ["/v1/datasets", "/v1/jobs", "/v1/models", "/v1/base-models"]


def call(client, method, path, kw, headers):
    h = {**kw.get("headers", {}), **headers}
    return client.request(method, path, **{k: v for k, v in kw.items() if k != "headers"},
                          headers=h)


def test_every_route_needs_a_key(client, alice_objects):
    for method, path, kw in routes(alice_objects) + [("GET", p, {}) for p in LIST_ROUTES] + [
            ("POST", "/v1/datasets", {"files": {"file": ("x.csv", toy_csv(4))}})]:
        res = call(client, method, path, kw, {})
        assert res.status_code == 401, (method, path, res.status_code)
        assert res.json()["error"]["code"] == "unauthorized"
        assert res.headers["www-authenticate"].startswith("Bearer")
    for bad in ("Bearer nope", "Basic YWxpY2U6eA==", "Bearer adapt_000000000000_" + "x" * 43):
        assert client.get("/v1/jobs", headers={"Authorization": bad}).status_code == 401


def test_another_tenants_ids_are_404_on_every_route(client, alice_objects, bob):
    for method, path, kw in routes(alice_objects):
        res = call(client, method, path, kw, bob["headers"])
        assert res.status_code == 404, (method, path, res.status_code, res.text)
    for path in LIST_ROUTES[:3]:
        ids = [d["id"] for d in client.get(path, headers=bob["headers"]).json()["data"]]
        assert not set(ids) & set(alice_objects.values())


def test_the_owner_still_sees_everything(client, alice_objects, alice):
    for method, path, kw in routes(alice_objects)[:13]:
        if method == "GET" or path.endswith("/predict"):
            res = call(client, method, path, kw, alice["headers"])
            assert res.status_code == 200, (method, path, res.text)


def test_a_revoked_key_stops_working_at_once(client, auth_on):
    key = make_key("carol")
    assert client.get("/v1/jobs", headers=key["headers"]).status_code == 200
    with session_scope() as s:
        keys.revoke(s, key["id"])
    assert client.get("/v1/jobs", headers=key["headers"]).status_code == 401


def test_admin_api_manages_keys_and_only_for_admins(client, auth_on, alice):
    admin = make_key("ops", admin=True)
    assert client.post("/v1/admin/keys", json={"tenant": "dave"},
                       headers=alice["headers"]).status_code == 403
    created = client.post("/v1/admin/keys", json={"tenant": "dave", "name": "d"},
                          headers=admin["headers"])
    assert created.status_code == 201
    dave = {"Authorization": f"Bearer {created.json()['key']}"}
    assert client.get("/v1/jobs", headers=dave).json()["data"] == []
    listed = client.get("/v1/admin/keys", params={"tenant": "dave"}, headers=admin["headers"])
    assert [k["id"] for k in listed.json()["data"]] == [created.json()["id"]]
    assert "key" not in listed.json()["data"][0]  # the secret is never shown again
    client.delete(f"/v1/admin/keys/{created.json()['id']}", headers=admin["headers"])
    assert client.get("/v1/jobs", headers=dave).status_code == 401
    bad = client.post("/v1/admin/keys", json={"tenant": "../etc"}, headers=admin["headers"])
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "tenant"


def test_keys_are_stored_hashed(auth_on):
    from app.models import ApiKey

    row_key = make_key("erin")
    # "Bearer adapt_<prefix>_<secret>": the secret itself may contain "_" (token_urlsafe)
    secret = row_key["headers"]["Authorization"].split(" ", 1)[1].split("_", 2)[2]
    with session_scope() as s:
        row = s.get(ApiKey, row_key["id"])
        assert secret not in (row.secret_hash + row.prefix) and len(row.secret_hash) == 64


def test_rate_limit_answers_429_with_retry_after(client, alice_objects, alice, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_predict_per_minute", 3)
    limiter.reset()
    path = f"/v1/models/{alice_objects['model']}/predict"
    codes = [client.post(path, json={"inputs": ["x"]}, headers=alice["headers"]).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    res = client.post(path, json={"inputs": ["x"]}, headers=alice["headers"])
    assert res.json()["error"]["code"] == "rate_limited" and int(res.headers["retry-after"]) >= 1
    limiter.reset()


def test_concurrent_job_cap_per_tenant(client, auth_on, monkeypatch):
    frank = make_key("frank")["headers"]
    monkeypatch.setattr(get_settings(), "max_active_jobs_per_tenant", 1)
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: True)  # they stay queued
    ds = client.post("/v1/datasets", files={"file": ("f.csv", toy_csv(8))}, headers=frank).json()
    body = {"base_model": "tiny-bert", "training_dataset": ds["id"]}
    first = client.post("/v1/jobs", json=body, headers=frank)
    assert first.status_code == 201
    second = client.post("/v1/jobs", json=body, headers=frank)
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_active_jobs"
    client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=frank)
    assert client.post("/v1/jobs", json=body, headers=frank).status_code == 201


def test_the_server_refuses_to_run_without_keys_beyond_loopback(monkeypatch):
    from app import serve

    monkeypatch.setattr(get_settings(), "auth", "off")
    monkeypatch.setattr(serve.uvicorn, "run", lambda *a, **k: pytest.fail("must not serve"))
    with pytest.raises(SystemExit, match="ADAPT_AUTH=off"):
        serve.main(["--host", "0.0.0.0", "--no-worker"])


def test_auto_auth_is_on_beyond_loopback_and_off_on_it(monkeypatch):
    settings = get_settings()
    monkeypatch.setattr(settings, "auth", "auto")
    for host, expected in (("127.0.0.1", False), ("::1", False), ("0.0.0.0", True),
                           ("10.0.0.5", True), ("", True)):
        monkeypatch.setattr(settings, "bind_host", host)
        assert settings.auth_enabled is expected, host


def test_admin_cli_creates_lists_and_revokes(capsys, client, auth_on):
    import json

    from app.admin_cli import main

    assert main(["keys", "create", "--tenant", "cli-tenant", "--name", "ci"]) == 0
    created = json.loads(capsys.readouterr().out)
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    assert main(["keys", "list", "--tenant", "cli-tenant"]) == 0
    assert [k["id"] for k in json.loads(capsys.readouterr().out)] == [created["id"]]
    assert main(["keys", "revoke", created["id"]]) == 0
    assert client.get("/v1/jobs", headers=headers).status_code == 401
    assert main(["keys", "create", "--tenant", "Bad Tenant!"]) == 2


def bad_input(o: dict) -> dict[tuple[str, str], dict]:
    """A malformed request per route (method, path template) → request kwargs."""
    return {
        ("POST", "/v1/datasets"): {"files": {"file": ("x.csv", b"text,label\nonly,one\n")}},
        ("GET", "/v1/datasets"): {"params": {"limit": 0}},
        ("GET", "/v1/datasets/{id}"): {"path": "/v1/datasets/ds_%2e%2e%2fetc"},
        ("POST", "/v1/base-models"): {"data": {"architecture": "resnet18"},
                                      "files": {"file": ("w.pth", b"not a pickle")}},
        ("POST", "/v1/jobs"): {"json": {"base_model": "tiny-bert",
                                        "training_dataset": o["dataset"],
                                        "hyperparameters": {"epochs": 0}}},
        ("GET", "/v1/jobs"): {"params": {"status": "exploded"}},
        ("GET", "/v1/jobs/{id}/events"): {"params": {"after": -1}},
        ("GET", "/v1/jobs/{id}/metrics"): {"params": {"format": "xml"}},
        ("POST", "/v1/models"): {"json": {"checkpoint": 5}},
        ("POST", "/v1/models/{id}/predict"): {"json": {"inputs": ["x"] * 300}},
        ("POST", "/v1/admin/keys"): {"json": {"tenant": "../../etc"}},
    }


def test_route_matrix_no_key_other_tenant_bad_input(client, alice_objects, alice, bob):
    """The closing note's table: every route × {no key, another tenant's id, bad input}."""
    admin = make_key("matrix-admin", admin=True)
    ids = {"/v1/datasets/{id}": alice_objects["dataset"], "/v1/jobs/{id}": alice_objects["job"],
           "/v1/checkpoints/{id}": alice_objects["checkpoint"],
           "/v1/models/{id}": alice_objects["model"]}
    table = []
    for method, template, kw in [
            ("POST", "/v1/datasets", {"files": {"file": ("x.csv", toy_csv(4))}}),
            ("GET", "/v1/datasets", {}), ("GET", "/v1/datasets/{id}", {}),
            ("DELETE", "/v1/datasets/{id}", {}), ("GET", "/v1/base-models", {}),
            ("POST", "/v1/base-models", {"data": {"architecture": "resnet18"},
                                         "files": {"file": ("w.safetensors", b"x")}}),
            ("POST", "/v1/jobs", {"json": {"base_model": "tiny-bert",
                                           "training_dataset": alice_objects["dataset"]}}),
            ("GET", "/v1/jobs", {}), ("GET", "/v1/jobs/{id}", {}),
            ("POST", "/v1/jobs/{id}/cancel", {}), ("GET", "/v1/jobs/{id}/events", {}),
            ("GET", "/v1/jobs/{id}/metrics", {}), ("GET", "/v1/jobs/{id}/checkpoints", {}),
            ("GET", "/v1/checkpoints/{id}/content", {}),
            ("POST", "/v1/models", {"json": {"checkpoint": alice_objects["checkpoint"]}}),
            ("GET", "/v1/models", {}), ("GET", "/v1/models/{id}", {}),
            ("GET", "/v1/models/{id}/evaluation", {}),
            ("POST", "/v1/models/{id}/predict", {"json": {"inputs": ["hello"]}}),
            ("DELETE", "/v1/models/{id}", {}), ("POST", "/v1/admin/keys", {"json": {"tenant": "z"}}),
    ]:
        prefix = next((p for p in ids if template.startswith(p)), None)
        path = template.replace("{id}", ids[prefix]) if prefix else template
        no_key = call(client, method, path, kw, {}).status_code
        other = (call(client, method, path, kw, bob["headers"]).status_code
                 if prefix or "checkpoint" in kw.get("json", {}) or "training_dataset" in
                 kw.get("json", {}) else "—")
        bad_kw = bad_input(alice_objects).get((method, template))
        bad = "—"
        if bad_kw is not None:
            bad_path = bad_kw.pop("path", path)
            who = admin if "admin" in template else alice
            bad = call(client, method, bad_path, bad_kw, who["headers"]).status_code
        table.append((method, template, no_key, other, bad))
        assert no_key == 401, (method, template)
        assert other in (404, "—"), (method, template, other)
        assert bad == "—" or 400 <= bad < 500, (method, template, bad)
    print("\n| route | no key | other tenant's id | bad input |\n|---|---|---|---|")
    for method, template, no_key, other, bad in table:
        print(f"| `{method} {template}` | {no_key} | {other} | {bad} |")
