"""Model selection through the SDK (sync and async) and the CLI, against the live API and a real
worker: create, wait, get; `adapt base-models rank` and `adapt base-models ranking`."""
import asyncio
import json

import pytest
from helpers import topics_csv
from live import live  # noqa: F401 - the fixture
from typer.testing import CliRunner

import adapt
from adapt import AsyncClient, Client
from adapt.cli import app


@pytest.fixture(scope="module")
def sdk(live):
    with Client(live.url, live.key) as c:
        yield c


@pytest.fixture(scope="module")
def dataset_id(sdk, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("msel") / "topics.csv"
    path.write_bytes(topics_csv())
    return sdk.datasets.upload(path, name="topics").id


def test_sync_create_wait_get(sdk, dataset_id):
    sel = sdk.model_selection.create(dataset_id, ["tiny-bert", "minilm-l6-v2"])
    assert isinstance(sel, adapt.ModelSelection) and sel.status == "queued"
    done = sdk.model_selection.wait(sel.id, timeout=300)
    assert done.status == "succeeded" and done.recommended == "minilm-l6-v2"
    assert [r.rank for r in done.results] == [1, 2]
    assert sdk.model_selection.get(sel.id).results[0].logme == done.results[0].logme
    with pytest.raises(adapt.ValidationError) as bad:
        sdk.model_selection.create(dataset_id, ["mobilenet-v2-imagenet"])
    assert bad.value.param == "candidates"


def test_async_create_wait(live, dataset_id):
    async def run():
        async with AsyncClient(live.url, live.key) as c:
            sel = await c.model_selection.create(dataset_id, ["tiny-bert"], max_examples=20)
            return await c.model_selection.wait(sel.id, timeout=300)
    done = asyncio.run(run())
    assert done.status == "succeeded" and done.results[0].examples == 20


def test_cli_rank_and_ranking(live, dataset_id):
    base = ["--url", live.url, "--api-key", live.key, "base-models"]
    r = CliRunner().invoke(app, [*base, "rank", dataset_id, "--candidates", "tiny-bert",
                                 "--json"])
    assert r.exit_code == 0, r.output
    sel = json.loads(r.output)
    assert sel["status"] == "succeeded" and sel["results"][0]["base_model"] == "tiny-bert"
    r = CliRunner().invoke(app, [*base, "ranking", sel["id"]])
    assert r.exit_code == 0 and "tiny-bert" in r.output and "LogME" in r.output
