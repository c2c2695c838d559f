"""The Python SDK against the API served by uvicorn (keys on) and a real worker: upload from a path,
train, stream events live through dropped connections, wait, predict, typed errors, pagination."""
import tracemalloc

import httpx
import pytest
from helpers import toy_csv
from live import live  # noqa: F401 - the fixture

import adapt
from adapt import Client

HYPER = {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3}


@pytest.fixture(scope="module")
def sdk(live):
    with Client(live.url, live.key) as c:
        yield c


class CutStreams(httpx.BaseTransport):
    """Cuts every event stream after `events` logged events, as a dropped connection would;
    records the Last-Event-ID each stream request resumed from."""

    def __init__(self, events: int):
        self.inner, self.events, self.resumed_from = httpx.HTTPTransport(), events, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.headers.get("accept") != "text/event-stream":
            return response
        self.resumed_from.append(request.headers.get("last-event-id"))
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Cut(response.stream, self.events))


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner, events: int):
        self.inner, self.events = inner, events

    def __iter__(self):
        buffer, sent = b"", 0
        for chunk in self.inner:
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                yield block + b"\n\n"
                sent += block.startswith(b"id:")
                if sent == self.events:
                    raise httpx.RemoteProtocolError("peer closed connection mid-stream")

    def close(self):
        self.inner.close()


class NoEventStream(httpx.BaseTransport):
    """A proxy that drops `Accept: text/event-stream`: the server answers with JSON."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("accept") == "text/event-stream":
            request.headers["accept"] = "application/json"
        return self.inner.handle_request(request)


@pytest.fixture(scope="module")
def trained(live, sdk, tmp_path_factory):
    """Upload from a path, start a job, and read its events live through a connection that
    drops after every 2 events; returns (final job, streamed events, the cutting transport)."""
    path = tmp_path_factory.mktemp("sdk") / "toy.csv"
    path.write_bytes(toy_csv(160))
    ds = sdk.datasets.upload(path, name="toy")
    assert isinstance(ds, adapt.Dataset)
    assert (ds.name, ds.num_examples, ds.labels) == ("toy", 160, ["bad", "good"])
    job = sdk.jobs.create("tiny-bert", ds.id, hyperparameters=HYPER, validation_split=0.25,
                          seed=1, metadata={"suite": "sdk"})
    assert isinstance(job, adapt.Job) and job.status == "queued"
    cut = CutStreams(events=2)
    with Client(live.url, live.key, transport=cut) as flaky:
        streamed = list(flaky.jobs.stream(job.id))
    return job.wait(timeout=180), streamed, cut


def test_stream_resumes_after_drops_without_losing_or_repeating_events(sdk, trained):
    job, streamed, cut = trained
    assert job.status == "succeeded", job.error
    ids = [e.id for e in streamed]
    assert ids == sorted(set(ids)), "events repeated or out of order"
    assert ids == [e.id for e in sdk.jobs.events(job.id)]  # the whole log, nothing lost
    statuses = [e.data["status"] for e in streamed if e.type == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses
    assert [e.data["epoch"] for e in streamed if e.type == "metrics"] == [1, 2, 3]
    # Every reconnect resumed from the last event it had delivered.
    assert len(cut.resumed_from) > 2
    assert cut.resumed_from[0] is None
    assert [int(i) for i in cut.resumed_from[1:]] == ids[1::2][:len(cut.resumed_from) - 1]


def test_wait_returns_the_final_job_and_its_model_predicts(sdk, trained):
    job = trained[0]
    assert job.finished and job.model.startswith("mdl_")
    assert job.progress.step == job.progress.total_steps == 45
    assert job.metrics["val_accuracy"] >= 0.9
    result = sdk.models.predict(job.model, ["superb brilliant great film",
                                            "dull awful boring film"], top_k=2)
    assert isinstance(result, adapt.PredictionResult)
    assert [p.label for p in result.predictions] == ["good", "bad"]
    many = sdk.models.predict_many([job.model], ["superb brilliant great film",
                                                 "dull awful boring film"], top_k=2)
    assert isinstance(many, adapt.PredictionList) and many.data[0].model == job.model
    assert [p.label for p in many.data[0].predictions] == ["good", "bad"]
    evaluation = sdk.models.evaluation(job.model)
    assert evaluation.confusion_matrix.labels == ["bad", "good"]
    assert sum(map(sum, evaluation.confusion_matrix.matrix)) == 40
    assert sdk.models.get(job.model).job == job.id


def test_explain_returns_typed_word_scores_and_typed_errors(sdk, trained):
    model = trained[0].model
    text = "superb brilliant  great film"
    result = sdk.models.explain(model, [text], steps=8)
    assert isinstance(result, adapt.ExplanationResult) and result.steps == 8
    ex = result.explanations[0]
    assert isinstance(ex, adapt.Explained) and ex.label == ex.target == "good"
    assert all(isinstance(w, adapt.WordScore) for w in ex.words)
    assert [text[w.start:w.end] for w in ex.words] == ["superb", "brilliant", "great", "film"]
    assert sdk.models.explain(model, [text], target="bad").explanations[0].target == "bad"
    with pytest.raises(adapt.ValidationError) as err:
        sdk.models.explain(model, [text], target="meh")
    assert err.value.code == "unknown_label" and err.value.param == "target"
    with pytest.raises(adapt.ValidationError) as err:
        sdk.models.explain(model, [text], steps=10_000)
    assert err.value.code == "too_many_steps"


def test_without_an_event_stream_it_polls_the_same_events(live, sdk, trained):
    job = trained[0]
    with Client(live.url, live.key, transport=NoEventStream()) as polling:
        items = list(polling.jobs.stream(job.id, progress=True, poll_interval=0.1))
    events = [i for i in items if isinstance(i, adapt.JobEvent)]
    assert [e.id for e in events] == [e.id for e in sdk.jobs.events(job.id)]
    progress = [i for i in items if isinstance(i, adapt.JobProgress)]
    assert progress and progress[-1].step == 45


def test_checkpoints_metrics_and_download(sdk, trained, tmp_path):
    import zipfile

    job = trained[0]
    checkpoints = sdk.jobs.checkpoints(job.id)
    assert [c.epoch for c in checkpoints] == [1, 2, 3] and sum(c.is_best for c in checkpoints) == 1
    names = {m.name for m in sdk.jobs.metrics(job.id)}
    assert {"train_loss", "val_accuracy", "val_macro_f1"} <= names
    assert sdk.jobs.metrics_csv(job.id).startswith("step,epoch,name,value")
    path = sdk.models.download(job.model, tmp_path)
    assert path.name.endswith(".zip") and "config.json" in zipfile.ZipFile(path).namelist()


def test_jobs_take_resources(sdk, trained):
    """`resources` goes through and comes back typed; the test server's only live worker is a
    CPU one and no GPU worker is declared, so a GPU job is refused up front."""
    dataset = trained[0].training_dataset
    job = sdk.jobs.create("tiny-bert", dataset, hyperparameters={"epochs": 50},
                          resources={"device": "cpu"})
    assert job.resources == {"device": "cpu", "gpus": 0}
    sdk.jobs.cancel(job.id)
    assert sdk.jobs.get(trained[0].id).resources == {"device": "auto", "gpus": 0}
    with pytest.raises(adapt.ValidationError) as no_gpu:
        sdk.jobs.create("tiny-bert", dataset, resources={"device": "gpu", "gpus": 2})
    assert (no_gpu.value.code, no_gpu.value.param) == ("no_worker_for_device",
                                                       "resources.device")


def test_errors_are_typed_with_the_api_code(live, sdk, trained):
    with pytest.raises(adapt.NotFound) as nf:
        sdk.jobs.get("job_doesnotexist")
    assert (nf.value.code, nf.value.status) == ("not_found", 404)
    with pytest.raises(adapt.Conflict) as conflict:
        sdk.jobs.cancel(trained[0].id)
    assert (conflict.value.code, conflict.value.status) == ("job_finished", 409)
    with pytest.raises(adapt.ValidationError) as invalid:
        sdk.jobs.create("tiny-bert", trained[0].training_dataset,
                        hyperparameters={"epochs": 10_000})
    assert invalid.value.param == "hyperparameters.epochs"
    with pytest.raises(adapt.ValidationError) as bad_file:
        sdk.datasets.upload(b"text,label\nfine,good\n,bad\n", filename="bad.csv")
    assert bad_file.value.code and bad_file.value.details
    with Client(live.url, "not-a-key") as stranger, pytest.raises(adapt.Unauthorized) as unauth:
        stranger.datasets.get("ds_x")
    assert unauth.value.code == "unauthorized" and unauth.value.status == 401
    with Client("http://127.0.0.1:9", live.key) as nowhere, \
            pytest.raises(adapt.APIConnectionError):
        nowhere.base_models.list()


def test_list_iterates_across_pages_newest_first(sdk):
    uploaded = [sdk.datasets.upload(toy_csv(12, seed=i), filename=f"p{i}.csv").id
                for i in range(5)]
    pages = list(sdk.datasets.list(limit=2).pages())
    assert len(pages) >= 3 and all(len(p) <= 2 for p in pages)
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    ids = [d.id for d in sdk.datasets.list(limit=2)]
    assert ids == [d.id for p in pages for d in p] and len(ids) == len(set(ids))
    assert [i for i in ids if i in uploaded] == uploaded[::-1]


def test_env_configures_the_client_and_idempotency_key_replays(live, monkeypatch):
    monkeypatch.setenv("ADAPT_URL", live.url)
    monkeypatch.setenv("ADAPT_API_KEY", live.key)
    with Client() as c:
        a = c.datasets.upload(toy_csv(12, seed=99), filename="i.csv", idempotency_key="sdk-1")
        b = c.datasets.upload(toy_csv(12, seed=99), filename="i.csv", idempotency_key="sdk-1")
        assert a.id == b.id
        assert "tiny-bert" in {m.id for m in c.base_models.list()}


def test_upload_streams_from_disk(sdk, tmp_path):
    """A 32 MB file goes up in chunks: the client never holds it in memory."""
    path = tmp_path / "big.csv"
    with path.open("wb") as f:
        f.write(b"text\n")  # no label column: refused after the upload
        for _ in range(32):
            f.write((b"x" * 1023 + b"\n") * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(adapt.ValidationError):
            sdk.datasets.upload(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes for a {path.stat().st_size}-byte upload"


def test_rate_limited_carries_retry_after(sdk, environment):
    from app.ratelimit import limiter

    before, environment.rate_limit_uploads_per_minute = environment.rate_limit_uploads_per_minute, 1
    environment.rate_limits = "on"  # single-user mode (the suite's) has none unless asked
    try:
        sdk.datasets.upload(toy_csv(12, seed=7), filename="r.csv")
        with pytest.raises(adapt.RateLimited) as limited:
            sdk.datasets.upload(toy_csv(12, seed=8), filename="r.csv")
    finally:
        environment.rate_limit_uploads_per_minute, environment.rate_limits = before, "auto"
        limiter.reset()
    assert limited.value.code == "rate_limited" and limited.value.retry_after > 0


def test_distill_and_prune_through_the_sdk(sdk, trained):
    """jobs.create(method="distill", teacher=…) and models.prune(…): both jobs end in models
    that models.descendants lists, each with its figures beside the source's."""
    teacher = trained[0]
    student = sdk.jobs.create("tiny-bert", teacher.training_dataset, method="distill",
                              teacher=teacher.model, validation_split=0.25, seed=1,
                              transfer_dataset=teacher.training_dataset,
                              hyperparameters={**HYPER, "epochs": 1, "student_layers": 1})
    assert (student.method, student.teacher) == ("distill", teacher.model)
    assert student.transfer_dataset == teacher.training_dataset
    pruned = sdk.models.prune(teacher.model, ffn=0.5, retrain_epochs=1)
    assert (pruned.method, pruned.source_model) == ("prune", teacher.model)
    for job in (student.wait(timeout=180), pruned.wait(timeout=180)):
        assert job.status == "succeeded", job.error
    kids = {m.compression["kind"]: m for m in sdk.models.descendants(teacher.model)}
    assert set(kids) == {"distill", "prune"}
    assert all(m.source_model == teacher.model for m in kids.values())
    assert kids["distill"].compression["params"] < kids["distill"].compression["source"]["params"]
    with pytest.raises(adapt.ValidationError) as invalid:
        sdk.models.prune(teacher.model, ffn=1.5)
    assert invalid.value.status == 422
    with pytest.raises(adapt.NotFound):
        sdk.jobs.create("tiny-bert", teacher.training_dataset, method="distill",
                        teacher="mdl_doesnotexist")
