"""The `adapt` CLI against the API served by uvicorn and a real worker: every command's --json
parsed, `jobs follow` live to the evaluation, errors on stderr with the API's code, exit codes."""
import json
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from helpers import toy_csv
from live import live  # noqa: F401 - the fixture
from typer.testing import CliRunner

from adapt import Client, Unauthorized
from adapt.cli import app
from adapt.cli.main import ENTRY_POINT_GROUP, build_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def adapt_cli(live):
    runner = CliRunner()
    env = {"ADAPT_URL": live.url, "ADAPT_API_KEY": live.key}

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    return run


def as_json(result):
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "reviews.csv"
    path.write_bytes(toy_csv(160, seed=3))
    return path


@pytest.fixture(scope="module")
def followed(adapt_cli, csv_path):
    """Upload, create a job and follow it live, twice over (text, then --json)."""
    ds = as_json(adapt_cli("datasets", "upload", str(csv_path), "--name", "cli", "--json"))
    job = as_json(adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", ds["id"], "--epochs", "3",
                            "--batch-size", "8", "--learning-rate", "3e-3",
                            "--hp", "warmup_ratio=0.1", "--seed", "1", "--validation-split",
                            "0.25", "--metadata", "via=cli", "--json"))
    text = adapt_cli("jobs", "follow", job["id"])
    lines = [json.loads(line) for line in
             adapt_cli("jobs", "follow", job["id"], "--json").stdout.splitlines()]
    return ds, job, text.stdout, lines


def test_upload_and_create_print_the_objects(followed):
    ds, job, _, _ = followed
    assert ds["id"].startswith("ds_") and ds["num_examples"] == 160 and ds["name"] == "cli"
    assert job["status"] == "queued" and job["training_dataset"] == ds["id"]
    assert job["hyperparameters"]["epochs"] == 3 and job["metadata"] == {"via": "cli"}
    assert job["hyperparameters"]["learning_rate"] == 3e-3 and job["seed"] == 1


def test_follow_shows_progress_events_and_the_evaluation(followed):
    _, job, out, _ = followed
    assert f"job {job['id']} succeeded" in out
    assert "45/45" in out  # the progress bar reached the last step
    assert "epoch 3/3 done" in out  # events printed as they came
    assert "accuracy" in out and "macro-F1" in out and "confusion matrix" in out
    assert "good" in out and "bad" in out  # the per-class table


def test_follow_json_is_ndjson_events_then_the_job_with_its_evaluation(followed):
    _, job, _, lines = followed
    events = [line for line in lines if line["object"] == "event"]
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)) and events[-1]["data"] == {"status": "succeeded"}
    assert any(line["object"] == "progress" and line["step"] == 45 for line in lines)
    final = lines[-1]
    assert final["object"] == "job" and final["id"] == job["id"]
    assert final["status"] == "succeeded" and final["evaluation"]["accuracy"] >= 0.9


def test_list_show_predict_download(adapt_cli, followed, tmp_path):
    ds, job, _, lines = followed
    model = lines[-1]["model"]
    assert ds["id"] in [d["id"] for d in as_json(adapt_cli("datasets", "list", "--json"))]
    assert as_json(adapt_cli("datasets", "show", ds["id"], "--json"))["sha256"] == ds["sha256"]
    listed = as_json(adapt_cli("jobs", "list", "--status", "succeeded", "--all", "--json"))
    assert job["id"] in [j["id"] for j in listed] and {j["status"] for j in listed} == {"succeeded"}
    assert as_json(adapt_cli("jobs", "show", job["id"], "--json"))["model"] == model
    assert model in [m["id"] for m in as_json(adapt_cli("models", "list", "--json"))]
    pred = as_json(adapt_cli("models", "predict", model, "superb brilliant great film",
                             "dull awful boring film", "--top-k", "2", "--json"))
    assert [p["label"] for p in pred["predictions"]] == ["good", "bad"]
    table = adapt_cli("models", "predict", model, "superb brilliant great film").stdout
    assert "good" in table
    saved = as_json(adapt_cli("models", "download", model, "-o", str(tmp_path), "--json"))
    assert "config.json" in zipfile.ZipFile(saved["path"]).namelist()


def test_explain_prints_each_word_with_its_score(adapt_cli, followed):
    model = followed[3][-1]["model"]
    out = adapt_cli("models", "explain", model, "superb brilliant great film", "--steps", "8").stdout
    assert "good" in out and "explaining: good" in out
    rows = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1][:1] in "+-"}
    assert set(rows) == {"superb", "brilliant", "great", "film"}, out
    data = as_json(adapt_cli("models", "explain", model, "dull film", "--target", "good", "--json"))
    assert data["object"] == "explanation" and data["explanations"][0]["target"] == "good"
    assert [w["word"] for w in data["explanations"][0]["words"]] == ["dull", "film"]
    err = adapt_cli("models", "explain", model, "dull film", "--target", "meh", code=1)
    assert "unknown_label" in err.stderr


def test_distill_with_jobs_create_and_prune_with_models_prune(adapt_cli, followed):
    ds, _, _, lines = followed
    teacher = lines[-1]["model"]
    job = as_json(adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", ds["id"], "--method",
                            "distill", "--teacher", teacher, "--epochs", "1", "--hp",
                            "student_layers=1", "--hp", "temperature=3", "--transfer-dataset",
                            ds["id"], "--json"))
    assert (job["method"], job["teacher"], job["transfer_dataset"]) == ("distill", teacher,
                                                                         ds["id"])
    assert job["hyperparameters"]["temperature"] == 3.0
    pruned = json.loads(adapt_cli("models", "prune", teacher, "--ffn", "0.5", "--follow",
                                  "--json").stdout.splitlines()[-1])
    assert (pruned["status"], pruned["source_model"]) == ("succeeded", teacher)
    adapt_cli("jobs", "follow", job["id"])
    rows = as_json(adapt_cli("models", "descendants", teacher, "--json"))
    assert {m["compression"]["kind"] for m in rows} == {"distill", "prune"}
    table = adapt_cli("models", "descendants", teacher).stdout
    assert "prune" in table and "distill" in table and "speed-up" in table
    shown = adapt_cli("models", "show", pruned["model"]).stdout
    assert teacher in shown and "compression" in shown
    err = adapt_cli("models", "prune", teacher, "--ffn", "0", code=1)
    assert "target" in err.stderr and "Nothing to prune" in err.stderr


def test_keys_create_list_revoke(adapt_cli, live):
    created = as_json(adapt_cli("keys", "create", "--tenant", "acme", "--name", "ci", "--json"))
    assert created["tenant"] == "acme" and created["key"]
    with Client(live.url, created["key"]) as acme:
        assert list(acme.datasets.list()) == []  # another tenant sees none of sdk's datasets
    listed = as_json(adapt_cli("keys", "list", "--tenant", "acme", "--json"))
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    revoked = as_json(adapt_cli("keys", "revoke", created["id"], "--json"))
    assert revoked["revoked_at"]
    with Client(live.url, created["key"]) as acme, pytest.raises(Unauthorized):
        acme.datasets.list().first_page()


def test_errors_exit_non_zero_with_the_api_code_on_stderr(adapt_cli, live):
    r = adapt_cli("jobs", "show", "job_doesnotexist", code=1)
    assert r.stderr.startswith("error: not_found: ") and r.stdout == ""
    r = adapt_cli("jobs", "cancel", "job_doesnotexist", "--json", code=1)
    assert json.loads(r.stderr)["error"]["code"] == "not_found"
    r = adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", "ds_nope", code=1)
    assert "not_found" in r.stderr
    r = CliRunner().invoke(app, ["--url", "http://127.0.0.1:9", "datasets", "list"])
    assert r.exit_code == 3 and "connection_error" in r.stderr
    r = CliRunner().invoke(app, ["--url", live.url, "--api-key", "wrong", "jobs", "list"])
    assert r.exit_code == 1 and "unauthorized" in r.stderr


def test_console_script_runs(live):
    adapt = Path(sys.executable).with_name("adapt")
    out = subprocess.run([str(adapt), "--url", live.url, "--api-key", live.key, "jobs", "list",
                          "--limit", "1", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 1


def _server_entry_points() -> list[EntryPoint]:
    """The `adapt.cli` entry points the server's pyproject.toml registers (read from the file, so
    this holds whether or not the installed metadata is fresh)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        group = tomllib.load(f)["project"]["entry-points"][ENTRY_POINT_GROUP]
    return [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in group.items()]


def test_serve_takes_the_options_of_adapt_serve():
    cli = build_app(_server_entry_points())
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "serve" in r.stdout and "worker" in r.stdout
    r = CliRunner().invoke(cli, ["serve", "--help"])
    assert r.exit_code == 0 and "usage: adapt-serve" in r.stdout
    assert "--worker-only" in r.stdout and "--no-worker" in r.stdout
    r = CliRunner().invoke(cli, ["worker", "--help"])
    assert r.exit_code == 0 and "--gpus" in r.stdout


def test_serve_and_worker_come_from_the_server_only():
    """Without the server's entry points (only adapt-client installed) they are not listed."""
    r = CliRunner().invoke(build_app([]), ["--help"])
    assert r.exit_code == 0 and "datasets" in r.stdout
    assert "serve" not in r.stdout and "worker" not in r.stdout
    r = CliRunner().invoke(build_app([]), ["serve"])
    assert r.exit_code == 2


def test_jobs_create_takes_the_device_and_gpus(adapt_cli, followed):
    ds = followed[0]
    job = as_json(adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", ds["id"], "--epochs", "50",
                            "--device", "cpu", "--json"))
    assert job["resources"] == {"device": "cpu", "gpus": 0}
    adapt_cli("jobs", "cancel", job["id"])
    r = adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", ds["id"], "--gpus", "2", code=1)
    assert r.stderr.startswith("error: no_worker_for_device: No worker takes gpu jobs")


def test_a_cancelled_job_follows_to_exit_status_1(adapt_cli, followed):
    ds = followed[0]
    job = as_json(adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", ds["id"], "--epochs", "50",
                            "--json"))
    assert as_json(adapt_cli("jobs", "cancel", job["id"], "--json"))["status"] in (
        "cancelled", "cancelling")
    out = adapt_cli("jobs", "follow", job["id"], code=1).stdout
    assert f"job {job['id']} cancelled" in out
    r = adapt_cli("jobs", "cancel", job["id"], code=1)
    assert r.stderr.startswith("error: job_finished: ")


@pytest.fixture(scope="module")
def second_job(adapt_cli, followed):
    """Another job on the same data with another learning rate and seed, finished."""
    ds, job = followed[0], followed[1]
    other = as_json(adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", ds["id"], "--epochs", "3",
                              "--batch-size", "8", "--learning-rate", "1e-3", "--seed", "2",
                              "--validation-split", "0.25", "--json"))
    adapt_cli("jobs", "follow", other["id"])
    return job["id"], other["id"]


def _console_script(live, *args, columns=80):
    adapt = Path(sys.executable).with_name("adapt")
    env = {**__import__("os").environ, "COLUMNS": str(columns),
           "PYTHONPATH": f"{ROOT / 'clients' / 'python'}:{ROOT}"}
    out = subprocess.run([str(adapt), "--url", live.url, "--api-key", live.key, *args],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ids_are_never_cut_at_80_columns_or_piped(live, second_job):
    for out in (_console_script(live, "jobs", "list", "--limit", "50"),
                _console_script(live, "jobs", "list", "--limit", "50", columns=60)):
        for job_id in second_job:
            assert job_id in out, out  # whole, on one line
        assert max(len(line.rstrip()) for line in out.splitlines()) <= 80
        lines = [line for line in out.splitlines() if line.startswith("job_")]
        assert set(second_job) <= {line.split()[0] for line in lines}  # one line each
    out = _console_script(live, "models", "list")
    assert all(m["id"] in out for m in as_json(CliRunner().invoke(
        app, ["--url", live.url, "--api-key", live.key, "models", "list", "--json"])))


def test_base_models_list(adapt_cli):
    listed = as_json(adapt_cli("base-models", "list", "--json"))
    assert "tiny-bert" in {m["id"] for m in listed}
    out = adapt_cli("base-models", "list").stdout
    assert "tiny-bert" in out and "bundled" in out


def test_follow_of_an_unknown_job_is_an_error_before_any_bar(adapt_cli):
    r = adapt_cli("jobs", "follow", "job_nope", code=1)
    assert r.stderr.startswith("error: not_found: ") and r.stdout == ""
    r = adapt_cli("jobs", "follow", "job_nope", "--json", code=1)
    assert json.loads(r.stderr)["error"]["code"] == "not_found" and r.stdout == ""


def test_unknown_hyperparameter_lists_the_valid_names(adapt_cli, followed):
    from app.ml.config import RANGES

    from adapt.hyperparameters import HYPERPARAMETERS

    assert set(HYPERPARAMETERS) == set(RANGES)  # the client's list is the server's
    r = adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", followed[0]["id"], "--hp", "lr=0.1",
                  code=1)
    err = " ".join(r.stderr.split())
    assert "'lr'" in err and "Valid names:" in err
    assert all(name in err for name in HYPERPARAMETERS)
    r = adapt_cli("jobs", "create", "-b", "tiny-bert", "-d", followed[0]["id"], "--hp", "lr=0.1",
                  "--json", code=1)
    assert "learning_rate" in json.loads(r.stderr)["error"]["message"]


def test_jobs_metrics_table_csv_and_json(adapt_cli, followed):
    job_id = followed[1]["id"]
    values = as_json(adapt_cli("jobs", "metrics", job_id, "--json"))
    assert {"train_loss", "val_accuracy", "val_macro_f1", "val_loss"} <= {v["name"] for v in values}
    csv = adapt_cli("jobs", "metrics", job_id, "--csv").stdout
    assert csv.startswith("step,epoch,name,value") and len(csv.strip().splitlines()) == \
        len(values) + 1
    out = adapt_cli("jobs", "metrics", job_id).stdout
    assert "val_accuracy" in out and "train_loss" in out


def test_jobs_compare(adapt_cli, second_job):
    first, other = second_job
    data = as_json(adapt_cli("jobs", "compare", first, other, "--json"))
    rows = {row["name"]: row for row in data["rows"]}
    assert data["jobs"] == [first, other]
    assert rows["learning_rate"]["differs"] and rows["learning_rate"]["values"] == ["0.003",
                                                                                    "0.001"]
    assert rows["seed"]["differs"] and not rows["base model"]["differs"]
    assert not rows["status"]["differs"] and rows["status"]["values"] == ["succeeded"] * 2
    assert {"best val_accuracy", "best val_loss", "best val_macro_f1"} <= set(rows)
    out = adapt_cli("jobs", "compare", first, other).stdout
    assert first in out and other in out and "* learning_rate" in out and "  method" in out
    adapt_cli("jobs", "compare", first, code=2)
    r = adapt_cli("jobs", "compare", first, "job_nope", code=1)
    assert "not_found" in r.stderr


def test_datasets_check_waits_for_the_quality_report_and_show_prints_it(adapt_cli, tmp_path):
    path = tmp_path / "copies.csv"
    path.write_text("text,label\n" + "".join(f"review number {i} of a film,{'ab'[i % 2]}\n"
                                             for i in range(12))
                    + "review number 3 of a film,b\nREVIEW number 5 of a film!,b\n")
    ds = as_json(adapt_cli("datasets", "upload", str(path), "--json"))
    report = as_json(adapt_cli("datasets", "check", ds["id"], "--wait", "--json"))
    assert report["status"] == "succeeded", report
    assert report["summary"]["exact_duplicate_groups"] == 1
    assert report["details"]["duplicates"]["exact"]["examples"][0][0]["line"] == 5
    shown = adapt_cli("datasets", "show", ds["id"]).stdout
    assert "quality       succeeded" in shown and "group(s) of exact duplicates" in shown
    again = as_json(adapt_cli("datasets", "quality", ds["id"], "--json"))
    assert again["id"] == report["id"]
    missing = adapt_cli("datasets", "quality", ds["id"], "--against", "ds_nope", code=1)
    assert "not_found" in missing.stderr
