"""Explanations on the model server (issue 13): with ADAPT_MODEL_SERVER set, POST /explain and
predict with "explain": true answer what the in-process path answers, for a text and an image
model, while the API process loads no model (the server holds it); bad requests are the same
4xx, a server that is down is a 503 with Retry-After; on the server an explain runs on its own
thread, so predict requests are answered while it runs, a full explain queue is refused with
Retry-After, and an explain whose caller has given up is not run, or stops at its next pass when
it runs already, giving its place back."""
import asyncio
import base64
import io
import logging
import threading
import time
import zipfile

import httpx
import pytest
from helpers import (model_server_on_a_thread, model_server_stats, toy_csv, uvicorn_server,
                     wait_for_job, wait_model_server)
from PIL import Image

from app import worker_pool
from app.config import get_settings
from app.errors import Unavailable
from app.ml import explain as ml_explain
from app.models_api import model_server
from app.models_api.batching import Batcher
from app.models_api.inference import ModelCache, model_cache, new_model_cache
from conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("worker")
TEXTS = ["great wonderful superb film", "awful boring dull film", "moving brilliant film"]


def _train(client, file: tuple, job: dict) -> str:
    ds = client.post("/v1/datasets", files={"file": file})
    assert ds.status_code == 201, ds.text
    res = client.post("/v1/jobs", json={**job, "training_dataset": ds.json()["id"], "seed": 0})
    assert res.status_code == 201, res.text
    done = wait_for_job(client, res.json()["id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    return done["model"]


@pytest.fixture(scope="module")
def text_model(client) -> str:
    return _train(client, ("data.csv", toy_csv()), {
        "base_model": "tiny-bert", "method": "full",
        "hyperparameters": {"epochs": 2, "batch_size": 16}})


@pytest.fixture(scope="module")
def image_model(client) -> str:
    return _train(client, ("digits.zip", (FIXTURES / "digits" / "digits-train.zip").read_bytes()), {
        "base_model": "mobilenet-v2-imagenet", "method": "head",
        "hyperparameters": {"image_size": 32, "epochs": 1}})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A model server process, kept running as adapt-serve keeps it: its socket path."""
    path = tmp_path_factory.mktemp("ms") / "explain.sock"
    kept = worker_pool.Kept(worker_pool.WorkerSpec("model-server", 0, {}),
                            model_server.command(path), name="model server")
    try:
        wait_model_server(path)
        yield path
    finally:
        kept.stop()


def _here_and_there(client, server, monkeypatch, model: str, requests: list[tuple[str, dict]]):
    """Each request's response in process (no model server), then with the model server, this
    API process having unloaded the model first: (in-process ones, model-server ones)."""
    here = [client.post(f"/v1/models/{model}/{route}", **kw) for route, kw in requests]
    model_cache().drop(model)
    monkeypatch.setattr(get_settings(), "model_server", str(server))
    there = [client.post(f"/v1/models/{model}/{route}", **kw) for route, kw in requests]
    return here, there


def test_a_text_explanation_on_the_server_is_the_in_process_one(client, text_model, server,
                                                                 monkeypatch):
    requests = [("explain", {"json": {"inputs": TEXTS}}),
                ("explain", {"json": {"inputs": TEXTS[:2], "target": "bad", "steps": 4,
                                      "top_k": 1}}),
                ("predict", {"json": {"inputs": TEXTS, "explain": True, "steps": 8,
                                      "min_confidence": 0.6}})]
    here, there = _here_and_there(client, server, monkeypatch, text_model, requests)
    for a, b in zip(here, there, strict=True):
        assert a.status_code == b.status_code == 200, b.text
        assert b.json() == a.json()
    assert there[1].json()["explanations"][0]["target"] == "bad"
    assert there[2].json()["predictions"][0]["words"]
    assert text_model not in model_cache()  # the API process loaded nothing
    assert text_model in model_server_stats(server)["models"]  # the server did


def _png(size: tuple[int, int], digit: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(digit)).convert("RGB").resize(size).save(out, format="PNG")
    return out.getvalue()


def test_an_image_explanation_on_the_server_is_the_in_process_one(client, image_model, server,
                                                                   monkeypatch):
    """Base64 and multipart; a larger image's heatmap comes back at its full resolution."""
    with zipfile.ZipFile(FIXTURES / "digits" / "digits-heldout.zip") as zf:
        digit = zf.read(next(n for n in zf.namelist() if n.startswith("7/")))
    images = [digit, _png((640, 480), digit)]
    requests = [
        ("explain", {"json": {"inputs": [{"image_base64": base64.b64encode(b).decode()}
                                         for b in images], "target": "7", "steps": 4}}),
        ("explain", {"files": [("files", ("d.png", digit, "image/png"))],
                     "data": {"top_k": "2", "steps": "2"}}),
        ("predict", {"files": [("files", ("d.png", images[1], "image/png"))],
                     "data": {"explain": "true", "steps": "2"}})]
    here, there = _here_and_there(client, server, monkeypatch, image_model, requests)
    for a, b in zip(here, there, strict=True):
        assert a.status_code == b.status_code == 200, b.text
        assert b.json() == a.json()
    heat = there[0].json()["explanations"][1]["heatmap"]
    assert (heat["width"], heat["height"]) == (640, 480)
    assert Image.open(io.BytesIO(base64.b64decode(heat["png_base64"]))).size == (640, 480)
    assert image_model not in model_cache()
    assert image_model in model_server_stats(server)["models"]


def _truncated_png() -> bytes:
    """A PNG whose header reads (its size is checked) but whose pixels do not decode."""
    out = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(out, format="PNG")
    return out.getvalue()[:200]


@pytest.mark.parametrize("which,body,status,code", [
    ("text", {"inputs": ["a"], "steps": 129}, 422, "too_many_steps"),
    ("text", {"inputs": ["a"], "target": "maybe"}, 422, "unknown_label"),
    ("text", {"inputs": [{"image_base64": "aGVsbG8="}]}, 422, "wrong_input_kind"),
    ("text", {"inputs": ["a"] * 33}, 422, "too_many_inputs"),
    ("image", {"inputs": [{"image_base64": base64.b64encode(_truncated_png()).decode()}]},
     422, "invalid_request"),
    ("missing", {"inputs": ["a"]}, 404, "not_found"),
])
def test_a_bad_explain_request_is_the_same_4xx_with_a_server(client, text_model, image_model,
                                                             server, monkeypatch, which, body,
                                                             status, code):
    model = {"text": text_model, "image": image_model, "missing": "mdl_nope"}[which]
    requests = [("explain", {"json": body}), ("predict", {"json": {**body, "explain": True}})]
    here, there = _here_and_there(client, server, monkeypatch, model, requests)
    for a, b in zip(here, there, strict=True):
        assert a.status_code == b.status_code == status, b.text
        assert b.json() == a.json()
        assert b.json()["error"]["code"] == code


def test_a_server_that_is_down_is_a_503_with_retry_after(client, text_model, tmp_path,
                                                         monkeypatch):
    monkeypatch.setattr(get_settings(), "model_server", str(tmp_path / "nobody.sock"))
    for route, body in (("explain", {"inputs": TEXTS[:1]}),
                        ("predict", {"inputs": TEXTS[:1], "explain": True})):
        res = client.post(f"/v1/models/{text_model}/{route}", json=body)
        assert res.status_code == 503 and res.headers["Retry-After"], res.text
        assert res.json()["error"]["code"] == "model_server_unavailable"


def test_an_api_process_of_its_own_gets_the_explanation_from_the_server(client, text_model,
                                                                        server):
    """The API as adapt-serve runs it (uvicorn, ADAPT_MODEL_SERVER set): the same body."""
    body = {"inputs": TEXTS[:2], "steps": 4}
    expected = client.post(f"/v1/models/{text_model}/explain", json=body).json()
    with uvicorn_server(ADAPT_MODEL_SERVER=str(server)) as api:
        res = httpx.post(f"{api}/v1/models/{text_model}/explain", json=body, timeout=120)
    assert res.status_code == 200, res.text
    assert res.json() == expected


# --- on the server: explains on their own thread, bounded, skipped when their caller has gone

class _SlowExplainer:
    """A predictor whose predict answers at once and whose explain waits for `release`."""

    labels, thresholds, method = ["a", "b"], None, "integrated_gradients"

    def __init__(self, release: threading.Event):
        self.release, self.explained = release, []
        self.batcher = Batcher(lambda xs, ks: [{"label": "a", "score": 1.0, "top": []}
                                               for _ in xs], max_wait_s=0)

    def explain(self, inputs, targets, steps, top_k, passes=None):
        self.release.wait(30)
        self.explained.append(inputs)
        return [{"label": "a", "score": 1.0, "top": [], "target": "a", "words": []}
                for _ in inputs]

    def nbytes(self) -> int:
        return 0

    def close(self) -> None:
        self.batcher.close()


@pytest.fixture
def slow_server(tmp_path):
    """A model server on a thread's event loop with _SlowExplainer models, holding at most two
    explain requests: (server, its loop, settings that point at it, the release event)."""
    release = threading.Event()
    server = model_server.ModelServer(ModelCache(2, load=lambda _: _SlowExplainer(release)),
                                      max_queued=64, max_explains=2)
    with model_server_on_a_thread(server, tmp_path / "e.sock") as (loop, settings):
        yield server, loop, settings, release
        release.set()


MODEL = {"id": "mdl_slow", "storage_key": "unused"}


def _explain(settings, loop, text: str):
    return asyncio.run_coroutine_threadsafe(
        model_server.explain(settings, MODEL, [text], None, 4, None), loop)


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_predict_is_answered_while_explains_run_and_a_full_explain_queue_is_refused(slow_server):
    server, loop, settings, release = slow_server
    running, waiting = _explain(settings, loop, "one"), _explain(settings, loop, "two")
    _until(lambda: server.explains == 2)
    with pytest.raises(Unavailable) as refused:
        asyncio.run(model_server.explain(settings, MODEL, ["three"], None, 4, None))
    assert refused.value.status == 503 and refused.value.code == "model_server_busy"
    assert refused.value.headers["Retry-After"] == "1"
    started = time.monotonic()
    [answer] = asyncio.run(model_server.predict(settings, [MODEL], ["x", "y"], None))
    assert len(answer["predictions"]) == 2 and time.monotonic() - started < 10
    assert not running.done() and not waiting.done()  # the explains still hold
    release.set()
    for future in (running, waiting):
        reply = future.result(30)
        assert reply["method"] == "integrated_gradients" and len(reply["explanations"]) == 1
    assert server.cache.get("mdl_slow", "unused").explained == [["one"], ["two"]]  # in turn


def test_an_explain_whose_caller_gave_up_is_not_run(slow_server):
    server, loop, settings, release = slow_server
    running = _explain(settings, loop, "kept")
    _until(lambda: server.explains == 1)
    impatient = settings.model_copy(update={"explain_timeout_s": 0.5})
    with pytest.raises(Unavailable) as waited:
        asyncio.run(model_server.explain(impatient, MODEL, ["dropped"], None, 4, None))
    assert waited.value.code == "model_server_unavailable"
    assert "ADAPT_EXPLAIN_TIMEOUT_S" in waited.value.message
    release.set()
    assert running.result(30)["explanations"]
    _until(lambda: server.explains == 0)
    assert server.cache.get("mdl_slow", "unused").explained == [["kept"]]


def test_a_running_explanation_whose_caller_gave_up_stops_and_gives_its_place_back(
        client, text_model, tmp_path, monkeypatch, caplog):
    """A server with room for one explain: the API gives up on a long explanation while it runs
    (ADAPT_EXPLAIN_TIMEOUT_S); it stops at its next forward/backward pass instead of running
    them all, nothing is logged as an error, and the next explain request is answered (not
    refused as busy: the place was given back at once). (Images stop alike: tests/ml.)"""
    caplog.set_level(logging.INFO, logger="adapt.model_server")
    url = f"/v1/models/{text_model}/explain"
    monkeypatch.setattr(ml_explain, "TOKENS_PER_PASS", 8 * 128)  # passes of 8 rows, quick ones
    # 4 texts past max_length (128 tokens), 32 steps: the probabilities, then 16 passes
    long = {"inputs": [" ".join(["a moving and brilliant film with a great cast"] * 20)] * 4,
            "steps": 32}
    server = model_server.ModelServer(new_model_cache(), max_queued=64, max_explains=1)
    with model_server_on_a_thread(server, tmp_path / "one.sock") as (_, there):
        monkeypatch.setattr(get_settings(), "model_server", there.model_server)
        assert client.post(url, json={"inputs": TEXTS[:1], "steps": 2}).status_code == 200
        started = time.monotonic()  # (the model is loaded now)
        assert client.post(url, json=long).status_code == 200
        # The API gives up a quarter of the way through, however fast this machine is.
        monkeypatch.setattr(get_settings(), "explain_timeout_s",
                            (time.monotonic() - started) / 4)
        gave_up = client.post(url, json=long)
        assert gave_up.status_code == 503, gave_up.text
        assert "ADAPT_EXPLAIN_TIMEOUT_S" in gave_up.json()["error"]["message"]
        monkeypatch.setattr(get_settings(), "explain_timeout_s", 300.0)
        after = client.post(url, json={"inputs": TEXTS[:1], "steps": 4})
        assert after.status_code == 200, after.text
        assert after.json()["explanations"][0]["words"]
        runs = server.explain_runs[-3:]
    full, stopped, _ = runs
    assert [r["outcome"] for r in runs] == ["answered", "abandoned", "answered"]
    assert 0 < stopped["passes"] < full["passes"]
    assert f"stopped after {stopped['passes']} passes: its caller hung up" in caplog.text
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
