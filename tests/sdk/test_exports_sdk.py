"""Exports through the SDK (sync and async) and the CLI, against the live API and a real worker:
create, wait, list, get, download, delete; `adapt models export` and `adapt exports …`."""
import asyncio
import json
import zipfile

import pytest
from helpers import toy_csv
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
def model_id(sdk, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("exports") / "toy.csv"
    path.write_bytes(toy_csv(120, seed=7))
    ds = sdk.datasets.upload(path, name="exports")
    job = sdk.jobs.create("tiny-bert", ds.id, validation_split=0.25, seed=3,
                          hyperparameters={"epochs": 2, "batch_size": 8, "learning_rate": 3e-3})
    job = job.wait(timeout=180)
    assert job.status == "succeeded"
    return job.model


def test_sync_create_wait_list_download_delete(sdk, model_id, tmp_path):
    export = sdk.exports.create(model_id, quantize="fp16")
    assert isinstance(export, adapt.Export) and export.status == "queued"
    done = sdk.exports.wait(export.id, timeout=180)
    assert done.status == "succeeded" and done.quantize == "fp16"
    assert set(done.evaluation) >= {"original", "export", "delta"}
    assert done.id in [e.id for e in sdk.exports.list(model_id)]
    assert sdk.exports.get(done.id).sha256 == done.sha256
    saved = sdk.exports.download(done.id, tmp_path)
    assert saved.name == f"{done.id}.zip" and saved.stat().st_size == done.size_bytes
    with zipfile.ZipFile(saved) as z:
        assert "model.onnx" in z.namelist()
    assert sdk.exports.delete(done.id).id == done.id
    with pytest.raises(adapt.NotFound):
        sdk.exports.get(done.id)


def test_errors_are_typed(sdk, model_id):
    with pytest.raises(adapt.ValidationError) as bad:
        sdk.exports.create(model_id, quantize="int4")
    assert bad.value.param == "quantize"
    with pytest.raises(adapt.NotFound):
        sdk.exports.create("mdl_missing")


def test_async_create_wait_list_download(live, model_id, tmp_path):
    async def main():
        async with AsyncClient(live.url, live.key) as client:
            export = await client.exports.create(model_id)
            done = await client.exports.wait(export.id, timeout=180)
            listed = [e.id async for e in client.exports.list(model_id)]
            saved = await client.exports.download(done.id, tmp_path / "fp32.zip")
            await client.exports.delete(done.id)
            return done, listed, saved

    done, listed, saved = asyncio.run(main())
    assert done.status == "succeeded" and done.quantize is None and done.id in listed
    assert zipfile.is_zipfile(saved) and saved.stat().st_size == done.size_bytes


def test_cli_models_export_then_exports_list_show_download_delete(live, model_id, tmp_path):
    runner = CliRunner()
    env = {"ADAPT_URL": live.url, "ADAPT_API_KEY": live.key}

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    made = json.loads(run("models", "export", model_id, "--format", "onnx", "--quantize", "int8",
                          "--wait", "--json").stdout)
    assert made["status"] == "succeeded" and made["quantize"] == "int8"
    listed = json.loads(run("exports", "list", model_id, "--json").stdout)
    assert made["id"] in [e["id"] for e in listed]
    table = run("exports", "list", model_id).stdout
    assert made["id"] in table and "int8" in table and "succeeded" in table
    assert "accuracy" in run("exports", "show", made["id"]).stdout
    run("exports", "download", made["id"], "-o", str(tmp_path))
    assert zipfile.is_zipfile(tmp_path / f"{made['id']}.zip")
    assert run("exports", "delete", made["id"]).stdout.strip() == f"deleted {made['id']}"
    missing = run("exports", "show", made["id"], code=1)
    assert "not_found" in missing.stderr
    run("models", "export", model_id, "--quantize", "int4", code=2)
