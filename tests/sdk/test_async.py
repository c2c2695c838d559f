"""AsyncClient against the live API (keys on, a real worker): upload, create, stream events live
to the end, wait, list with `async for`, predict, download, keys; and a create whose response is
lost after the server made the job, retried with the same Idempotency-Key: exactly one job."""
import asyncio
import uuid
import zipfile

import httpx
import pytest
from helpers import toy_csv
from live import live  # noqa: F401 - the fixture

import adapt
from adapt import AsyncClient, Client

HYPER = {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3}


def test_async_client_trains_streams_and_predicts(live, tmp_path):
    path = tmp_path / "toy.csv"
    path.write_bytes(toy_csv(120, seed=5))

    async def main():
        async with AsyncClient(live.url, live.key) as client:
            assert await client.health()
            ds = await client.datasets.upload(path, name="async")
            assert (await client.datasets.get(ds.id)).name == "async"
            assert "tiny-bert" in {m.id for m in await client.base_models.list()}
            job = await client.jobs.create("tiny-bert", ds.id, hyperparameters=HYPER,
                                           validation_split=0.25, seed=2)
            items = [item async for item in client.jobs.stream(job.id, progress=True)]
            final = await job.wait(timeout=180)
            listed = [j.id async for j in client.jobs.list(limit=2)]
            page = await client.datasets.list(limit=1).first_page()
            pred = await client.models.predict(final.model, ["superb brilliant great film"])
            why = await client.models.explain(final.model, ["superb brilliant great film"],
                                              steps=4)
            metrics = await client.jobs.metrics(final.id)
            csv = await client.jobs.metrics_csv(final.id)
            checkpoints = await client.jobs.checkpoints(final.id)
            saved = await client.models.download(final.model, tmp_path)
            keys = await client.keys.list(tenant="sdk")
            with pytest.raises(adapt.NotFound):
                await client.jobs.get("job_doesnotexist")
            return (ds, job, items, final, listed, page, pred, metrics, csv, checkpoints, saved,
                    keys, why)

    (ds, job, items, final, listed, page, pred, metrics, csv, checkpoints, saved,
     keys, why) = asyncio.run(main())
    assert final.status == "succeeded" and final.id == job.id and job.id in listed
    events = [i for i in items if isinstance(i, adapt.JobEvent)]
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert events[-1].data == {"status": "succeeded"}
    assert any(isinstance(i, adapt.JobProgress) for i in items)
    with Client(live.url, live.key) as sync:
        assert [e.id for e in sync.jobs.events(job.id)] == [e.id for e in events]
    assert len(page) == 1 and page.data[0].id == ds.id
    assert pred.predictions[0].label == "good"
    assert isinstance(why, adapt.ExplanationResult) and why.explanations[0].label == "good"
    assert [w.word for w in why.explanations[0].words] == ["superb", "brilliant", "great", "film"]
    assert {"train_loss", "val_accuracy"} <= {m.name for m in metrics}
    assert csv.startswith("step,epoch,name,value") and len(checkpoints) == 2
    assert "config.json" in zipfile.ZipFile(saved).namelist() and keys


class DropFirstResponse(httpx.BaseTransport):
    """Sends the first POST /v1/jobs to the server, then loses its response (the connection
    drops after the server has created the job); later requests go through."""

    def __init__(self):
        self.inner, self.posts = httpx.HTTPTransport(), []

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs":
            self.posts.append(request.headers.get("idempotency-key"))
            if len(self.posts) == 1:
                response.read()
                response.close()
                raise httpx.RemoteProtocolError("server disconnected without sending a response")
        return response


class AsyncDropFirstResponse(httpx.AsyncBaseTransport):
    def __init__(self):
        self.inner, self.posts = httpx.AsyncHTTPTransport(), []

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs":
            self.posts.append(request.headers.get("idempotency-key"))
            if len(self.posts) == 1:
                await response.aread()
                await response.aclose()
                raise httpx.RemoteProtocolError("server disconnected without sending a response")
        return response


@pytest.fixture(scope="module")
def dataset_id(live):
    with Client(live.url, live.key) as c:
        return c.datasets.upload(toy_csv(40, seed=11), filename="drop.csv").id


def _jobs_tagged(live, tag):
    with Client(live.url, live.key) as c:
        return [j.id for j in c.jobs.list(limit=100) if j.metadata.get("run") == tag]


def _cancel(live, job_id):
    with Client(live.url, live.key) as c:
        try:
            c.jobs.cancel(job_id)
        except adapt.Conflict:
            pass


def test_a_create_retried_after_a_dropped_response_makes_one_job(live, dataset_id):
    tag, drop = uuid.uuid4().hex, DropFirstResponse()
    with Client(live.url, live.key, transport=drop) as c:
        job = c.jobs.create("tiny-bert", dataset_id, hyperparameters={"epochs": 50},
                            metadata={"run": tag})
    _cancel(live, job.id)
    assert len(drop.posts) == 2 and drop.posts[0] == drop.posts[1]
    assert _jobs_tagged(live, tag) == [job.id]


def test_an_async_create_retried_after_a_dropped_response_makes_one_job(live, dataset_id):
    tag, drop = uuid.uuid4().hex, AsyncDropFirstResponse()

    async def main():
        async with AsyncClient(live.url, live.key, transport=drop) as c:
            return await c.jobs.create("tiny-bert", dataset_id, hyperparameters={"epochs": 50},
                                       metadata={"run": tag})

    job = asyncio.run(main())
    _cancel(live, job.id)
    assert len(drop.posts) == 2 and drop.posts[0] == drop.posts[1]
    assert _jobs_tagged(live, tag) == [job.id]
