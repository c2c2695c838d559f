"""The model server (app.models_api.model_server) behind real API processes: the same predictions
as in-process predict, requests of two API processes batched together, a killed or stuck server
is a 503 with Retry-After (never a hang; while its keeper waits to start a crashing one again,
the Retry-After is that wait) and works again once restarted, a full queue refuses with
Retry-After, a deleted model leaves the server's cache, and a fan-out (text or image) runs there
on one shared backbone."""
import asyncio
import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from helpers import (ROOT, digit_images, model_server_on_a_thread, model_server_stats, toy_csv,
                     train_digits, uvicorn_server, wait_for_job, wait_model_server)

from app import fast_predict, worker_pool
from app.config import get_settings
from app.errors import InvalidInput, Unavailable
from app.models_api import model_server
from app.models_api.batching import Batcher
from app.models_api.inference import ModelCache
from app.predict_activity import PredictActivity
from app.ratelimit import limiter

TEXTS = ["great wonderful superb film", "awful boring dull film", "moving brilliant film",
         "tedious lifeless terrible film", "delightful film", "dull film"]


@pytest.fixture(scope="module")
def trained(client, worker) -> dict:
    ds = client.post("/v1/datasets", files={"file": ("data.csv", toy_csv())})
    assert ds.status_code == 201, ds.text
    res = client.post("/v1/jobs", json={"base_model": "tiny-bert", "method": "full", "seed": 0,
                                        "training_dataset": ds.json()["id"],
                                        "hyperparameters": {"epochs": 2, "batch_size": 16}})
    assert res.status_code == 201, res.text
    job = wait_for_job(client, res.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return client.get(f"/v1/models/{job['model']}").json()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A model server kept running as adapt-serve keeps it (a long max wait: requests on their
    way are gathered), and two API processes using it."""
    path = tmp_path_factory.mktemp("ms") / "model.sock"
    kept = worker_pool.Kept(worker_pool.WorkerSpec("model-server", 0,
                                                   {"ADAPT_PREDICT_MAX_WAIT_MS": "300"}),
                            model_server.command(path), name="model server")
    try:
        wait_model_server(path)
        env = {"ADAPT_MODEL_SERVER": str(path), "ADAPT_PREDICT_TIMEOUT_S": "3"}
        with uvicorn_server(**env) as api_a, uvicorn_server(**env) as api_b:
            yield path, kept, api_a, api_b
    finally:
        kept.stop()


def test_two_api_processes_get_in_process_results_from_shared_batches(client, trained, served):
    path, _, api_a, api_b = served
    model = trained["id"]
    expected = client.post(f"/v1/models/{model}/predict", json={"inputs": TEXTS}).json()

    def ask(base: str, i: int) -> dict:
        res = httpx.post(f"{base}/v1/models/{model}/predict",
                         json={"inputs": TEXTS[i % 6:]}, timeout=30)
        assert res.status_code == 200, res.text
        return res.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: (i, ask((api_a, api_b)[i % 2], i)), range(32)))
    for i, body in answers:
        want = expected["predictions"][i % 6:]
        got = body["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=1e-5)
        assert [p["unsure"] for p in got] == [p["unsure"] for p in want]
    batches = [b for b in model_server_stats(path)["batches"] if b["model"] == model]
    assert sum(b["requests"] for b in batches) >= 32
    assert any(len(b["callers"]) == 2 for b in batches), batches  # both API processes in one


def _same_fan_out(res: httpx.Response, expected: list[dict]) -> None:
    """A fan-out's answer through the server is the in-process one."""
    assert res.status_code == 200, res.text
    for got, want in zip(res.json()["data"], expected, strict=True):
        assert got["model"] == want["model"]
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        assert [p["score"] for p in got["predictions"]] == pytest.approx(
            [p["score"] for p in want["predictions"]], abs=1e-5)


def test_a_fan_out_runs_on_the_server_with_one_backbone_and_metrics_show_its_memory(
        client, worker, served):
    """Two head models on one base: POST /v1/predict through an API process answers what the
    in-process fan-out answers, the server holds one backbone for both (each adds its head), and
    the API's /metrics reports that memory, asked of the server."""
    path, _, api_a, _ = served
    ds = client.post("/v1/datasets", files={"file": ("data.csv", toy_csv())}).json()["id"]
    models = []
    for seed in (1, 2):
        res = client.post("/v1/jobs", json={"base_model": "tiny-bert", "method": "head",
                                            "seed": seed, "training_dataset": ds,
                                            "hyperparameters": {"epochs": 1, "batch_size": 16}})
        job = wait_for_job(client, res.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        models.append(job["model"])
    body = {"models": models, "inputs": TEXTS, "top_k": 2}
    expected = client.post("/v1/predict", json=body).json()["data"]  # this process, no server
    res = httpx.post(f"{api_a}/v1/predict", json=body, timeout=60)
    _same_fan_out(res, expected)
    backbones, own = model_server_stats(path)["memory"]
    kinds = {labels["model"]: labels["kind"] for labels, _ in own}
    assert kinds[models[0]] == kinds[models[1]] == "head"
    heads = [n for labels, n in own if labels["model"] in models]
    assert len(backbones) == 1 and backbones[0][1] > 10 * max(heads)
    metrics = httpx.get(f"{api_a}/metrics", timeout=30).text
    assert f'adapt_loaded_model_bytes{{kind="head",model="{models[0]}"}}' in metrics
    assert "adapt_loaded_backbone_bytes{" in metrics


def test_an_image_fan_out_runs_on_the_server_on_one_shared_network(client, worker, served):
    """Two image head models on one base: a multipart POST /v1/predict through an API process
    answers what the in-process fan-out answers, and the server holds their network once."""
    path, _, api_a, _ = served
    models = train_digits(client, [("head", 1), ("head", 2)])
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(digit_images(4))]
    expected = client.post("/v1/predict", files=files, data={"models": models}).json()["data"]
    res = httpx.post(f"{api_a}/v1/predict", files=files, data={"models": models}, timeout=60)
    _same_fan_out(res, expected)
    backbones, own = model_server_stats(path)["memory"]
    assert [labels["base_model"] for labels, _ in backbones].count("mobilenet_v2") == 1
    assert {labels["kind"] for labels, _ in own if labels["model"] in models} == {"head"}


def test_a_stuck_or_killed_server_is_a_503_with_retry_after_then_works_again(trained, served):
    path, kept, api_a, _ = served
    url = f"{api_a}/v1/models/{trained['id']}/predict"
    assert httpx.post(url, json={"inputs": TEXTS[:1]}, timeout=30).status_code == 200
    pid = model_server_stats(path)["pid"]
    os.kill(pid, signal.SIGSTOP)  # in flight and never answered: the API's timeout (3 s) ends it
    try:
        res = httpx.post(url, json={"inputs": TEXTS[:1]}, timeout=30)
        assert res.status_code == 503 and res.headers["Retry-After"], res.text
        assert res.json()["error"]["code"] == "model_server_unavailable"
        with ThreadPoolExecutor(1) as pool:  # in flight when the server is killed
            pending = pool.submit(httpx.post, url, json={"inputs": TEXTS[:1]}, timeout=30)
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            res = pending.result()
        assert res.status_code == 503 and res.headers["Retry-After"], res.text
    finally:  # (already reaped, when the keeper noticed first: nothing left to kill)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    res = httpx.post(url, json={"inputs": TEXTS[:1]}, timeout=30)  # dead, not yet restarted
    assert res.status_code == 503 and res.headers["Retry-After"], res.text
    assert wait_model_server(path)["pid"] != pid
    res = httpx.post(url, json={"inputs": TEXTS[:1]}, timeout=30)
    assert res.status_code == 200, res.text


def test_while_a_crashing_server_waits_to_start_again_retry_after_says_how_long(tmp_path):
    """Its keeper backs off (app.worker_pool.Kept): a caller is told the wait, not "1 s" while
    the server is down for longer."""
    path = tmp_path / "crashing.sock"
    kept = worker_pool.Kept(worker_pool.WorkerSpec("model-server", 0), ["sh", "-c", "exit 3"],
                            restart_delay_s=5, down_file=model_server.down_file(path),
                            name="model server")
    try:
        deadline = time.time() + 30
        while not model_server.down_file(path).exists() and time.time() < deadline:
            time.sleep(0.02)
        with pytest.raises(Unavailable) as down:
            asyncio.run(model_server.call(str(path), {"op": "stats"}, 5))
    finally:
        kept.stop()
    assert down.value.status == 503 and down.value.code == "model_server_unavailable"
    assert 3 <= int(down.value.headers["Retry-After"]) <= 5
    assert "next start in" in down.value.message
    with pytest.raises(Unavailable) as gone:  # nothing pending: the usual short retry
        asyncio.run(model_server.call(str(path), {"op": "stats"}, 5))
    assert gone.value.headers["Retry-After"] == "1"


def test_deleting_a_model_unloads_it_from_the_server(client, trained, served):
    path, _, api_a, _ = served
    wait_model_server(path)  # (restarted by the test before)
    copy = client.post("/v1/models", json={"checkpoint": trained["checkpoint"]}).json()
    res = httpx.post(f"{api_a}/v1/models/{copy['id']}/predict", json={"inputs": TEXTS[:2]},
                     timeout=30)
    assert res.status_code == 200, res.text
    assert copy["id"] in model_server_stats(path)["models"]
    assert httpx.delete(f"{api_a}/v1/models/{copy['id']}", timeout=30).status_code == 200
    assert copy["id"] not in model_server_stats(path)["models"]


def test_adapt_serve_runs_a_model_server_its_api_workers_share(trained, environment):
    """`adapt-serve --api-workers 2` on the suite's data dir: predict answers through the model
    server it started (the model is loaded there), and stopping it stops the server too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [(path, _)] = model_server.plan(environment.data_dir, [], "cpu")
    proc = subprocess.Popen([sys.executable, "-m", "app.serve", "--no-worker", "--api-workers",
                             "2", "--port", str(port)], cwd=ROOT)
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        res = httpx.post(f"{base}/v1/models/{trained['id']}/predict", json={"inputs": TEXTS},
                         timeout=60)
        assert res.status_code == 200, res.text
        stats = model_server_stats(path)
        assert trained["id"] in stats["models"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(stats["pid"], 0)
            time.sleep(0.1)


class _Blocking:
    """A predictor whose forward pass waits for `release`."""

    labels, thresholds = ["a", "b"], None

    def __init__(self, release: threading.Event):
        self.seen = []
        self.batcher = Batcher(lambda xs, ks: release.wait(30) and self.seen.extend(xs) or [
            {"label": "a", "score": 1.0, "top": []} for _ in xs], max_wait_s=0)

    def nbytes(self) -> int:
        return 0

    def close(self) -> None:
        self.batcher.close()


@pytest.fixture
def fake_server(tmp_path):
    """A model server on a thread's event loop whose models are _Blocking ones: (server, its
    loop, settings that point at it, the event that lets forward passes finish)."""
    release = threading.Event()
    server = model_server.ModelServer(ModelCache(2, load=lambda _: _Blocking(release)),
                                      max_queued=4)
    with model_server_on_a_thread(server, tmp_path / "q.sock") as (loop, settings):
        yield server, loop, settings, release
        release.set()


def test_image_bytes_are_decoded_by_the_server_and_a_broken_one_is_a_422(fake_server):
    server, _, settings, release = fake_server
    release.set()
    models = [{"id": "mdl_img", "storage_key": "unused"}]
    png = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(png, format="PNG")
    [answer] = asyncio.run(model_server.predict(settings, models, [png.getvalue()], None))
    assert len(answer["predictions"]) == 1
    assert server.cache.get("mdl_img", Path(".")).seen[0].size == (8, 6)
    with pytest.raises(InvalidInput) as broken:
        asyncio.run(model_server.predict(settings, models, [png.getvalue(), b"GIF89a..."], None))
    assert broken.value.status == 422 and broken.value.param == "inputs.1"


def test_a_full_queue_is_refused_with_retry_after(fake_server):
    server, loop, settings, release = fake_server
    models = [{"id": "mdl_x", "storage_key": "unused"}]
    first = asyncio.run_coroutine_threadsafe(
        model_server.predict(settings, models, ["x"] * 3, None), loop)
    while server.queued < 3:
        time.sleep(0.01)
    with pytest.raises(Unavailable) as refused:
        asyncio.run(model_server.predict(settings, models, ["y"] * 2, None))
    assert refused.value.status == 503 and refused.value.code == "model_server_busy"
    assert refused.value.headers["Retry-After"] == "1"
    release.set()
    assert len(first.result(10)[0]["predictions"]) == 3
    [answer] = asyncio.run(model_server.predict(settings, models, ["y"] * 2, None))
    assert len(answer["predictions"]) == 2  # room again


def test_the_requests_it_holds_show_in_its_activity_file(fake_server, tmp_path):
    """What a training worker on the same cores reads between its steps (YieldToPredictions)."""
    server, loop, settings, release = fake_server
    server.activity = PredictActivity(model_server.activity_file(tmp_path / "q.sock"), owner=True)
    worker_view = PredictActivity.reader(tmp_path / "q.activity")
    assert not worker_view.busy(0.05)
    models = [{"id": "mdl_x", "storage_key": "unused"}]
    held = [asyncio.run_coroutine_threadsafe(
        model_server.predict(settings, models, [text], None), loop) for text in ("a", "b")]
    while worker_view.read()[0] < 2:
        time.sleep(0.01)
    release.set()
    assert all(len(h.result(10)[0]["predictions"]) == 1 for h in held)
    assert worker_view.read()[0] == 0 and worker_view.busy(5)  # just ended: a stream goes on
    time.sleep(0.1)
    assert not worker_view.busy(0.05)


def test_a_loaded_model_is_found_without_a_load_and_counted_as_a_hit():
    """What the server's event loop asks first (peek): loaded or not, without waiting."""
    seen = []
    cache = ModelCache(2, load=lambda _: _Blocking(threading.Event()), on_lookup=seen.append)
    assert cache.peek("m") is None and seen == []
    loaded = cache.get("m", Path("/nowhere"))
    assert cache.peek("m") is loaded and seen == [False, True]
    cache.drop("m")
    assert cache.peek("m") is None


def test_adapt_serve_plans_one_server_per_gpu_or_one_on_the_cpu(tmp_path):
    [(cpu, env)] = model_server.plan(tmp_path, [], "auto")
    assert cpu.name == "model-server-cpu.sock" and env["ADAPT_WORKER_DEVICE"] == "cpu"
    gpus = model_server.plan(tmp_path, ["0", "3"], "auto")
    assert [e["CUDA_VISIBLE_DEVICES"] for _, e in gpus] == ["0", "3"]
    settings = get_settings().model_copy(update={"model_server": ",".join(str(p) for p, _ in gpus)})
    owners = {model_server.address_for(settings, f"mdl_{i}") for i in range(50)}
    assert owners == {str(p) for p, _ in gpus}  # both used, each model always on one
    assert sys.executable in model_server.command(cpu)
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 4)
    [(short, _)] = model_server.plan(deep, [], "cpu")  # a socket's path has at most 107 bytes
    assert len(str(short).encode()) < 100 and short != model_server.plan(tmp_path, [], "cpu")[0][0]


# --- the lean predict path (app.fast_predict) in front of the model server: it answers what the
# regular route answers, byte for byte, counts in the same metrics, and leaves to the regular
# route everything it does not take (unknown models, bad input, explain), which then answers
# exactly as before; the rate limit takes one token per request.

@pytest.fixture
def via_server(served, monkeypatch):
    """This process's API sends predict to the served model server; the lean path's lookups are
    counted."""
    path = served[0]
    wait_model_server(path)  # (restarted by a test before)
    monkeypatch.setattr(get_settings(), "model_server", str(path))
    looked_up = []
    real = fast_predict.service.read_remote_predict
    monkeypatch.setattr(fast_predict.service, "read_remote_predict",
                        lambda *a: looked_up.append(a[2]) or real(*a))
    return looked_up


def test_the_lean_path_answers_what_the_route_answers(client, trained, via_server):
    url = f"/v1/models/{trained['id']}/predict"
    for body in ({"inputs": TEXTS}, {"inputs": TEXTS[:2], "top_k": 1},
                 {"inputs": TEXTS[:3], "min_confidence": 0.99}):
        lean = client.post(url, json=body)
        route = client.post(url, json=body, params={"via": "route"})  # a query: not lean
        assert lean.status_code == route.status_code == 200, lean.text
        assert lean.json() == route.json()
        assert lean.headers["content-type"] == route.headers["content-type"]
    assert via_server == [trained["id"]] * 3  # the lean path took the three, not the others
    unsure = client.post(url, json={"inputs": TEXTS, "min_confidence": 0.99}).json()
    assert [p["label"] is None for p in unsure["predictions"]] == \
        [p["unsure"] for p in unsure["predictions"]] == \
        [p["score"] < 0.99 for p in unsure["predictions"]]
    metrics = client.get("/metrics").text  # counted under the route's template
    assert re.search(r'adapt_http_requests_total\{[^}]*route="/v1/models/\{model_id\}/predict"'
                     r'[^}]*status="200"', metrics)
    assert not re.search(r'route="[^"]*mdl_', metrics)


@pytest.mark.parametrize("body,status,code", [
    ({"inputs": []}, 422, "invalid_request"),
    ({"inputs": ["fine", "   "]}, 422, "invalid_request"),
    ({"inputs": ["x"] * 300}, 422, "too_many_inputs"),
    ({"inputs": ["fine"], "top_k": 0}, 422, "invalid_request"),
    ({"inputs": ["fine"], "extra": 1}, 422, "invalid_request"),
])
def test_what_the_lean_path_refuses_the_route_answers_as_before(client, trained, via_server,
                                                                 body, status, code):
    url = f"/v1/models/{trained['id']}/predict"
    lean = client.post(url, json=body)
    assert lean.status_code == status and lean.json()["error"]["code"] == code, lean.text
    assert lean.json() == client.post(url, json=body, params={"via": "route"}).json()


def test_unknown_models_and_explain_go_the_regular_way(client, trained, via_server):
    missing = client.post("/v1/models/mdl_nope/predict", json={"inputs": ["fine"]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    explained = client.post(f"/v1/models/{trained['id']}/predict",
                            json={"inputs": TEXTS[:1], "explain": True, "steps": 4})
    assert explained.status_code == 200, explained.text
    assert explained.json()["predictions"][0]["words"]  # the regular route's explanation
    assert via_server == ["mdl_nope"]  # explain was not looked up on the lean path


def test_the_rate_limit_applies_once_per_request(client, trained, via_server, monkeypatch):
    settings = get_settings()
    monkeypatch.setattr(settings, "rate_limits", "on")
    monkeypatch.setattr(settings, "rate_limit_predict_per_minute", 2)
    limiter.reset()
    try:
        url = f"/v1/models/{trained['id']}/predict"
        assert [client.post(url, json={"inputs": TEXTS[:1]}).status_code
                for _ in range(3)] == [200, 200, 429]
        refused = client.post(url, json={"inputs": TEXTS[:1]})
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["Retry-After"]
    finally:
        limiter.reset()
