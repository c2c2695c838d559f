"""Data-quality reports on datasets: computed by a real worker after the upload and shown in
the dataset object; a report across two datasets (training and validation) on request; refused
requests get a clear 4xx; a report that fails leaves the dataset ready."""
import csv
import io
import time
from datetime import timedelta

import pytest
from helpers import ROOT, load_benchmark, toy_csv

from app.config import get_settings
from app.db import session_scope
from app.ids import new_id
from app.models import QualityReport
from app.models.base import utcnow
from workers.quality import run_quality, sample_rows

FIXTURES = ROOT / "tests" / "fixtures"


def _csv(rows: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows([r[0], r[1]] for r in rows)
    return out.getvalue().encode()


def _wait(client, url: str, params: dict | None = None, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(url, params=params).json()
        report = body.get("quality", body) if body.get("object") == "dataset" else body
        if report and report.get("status") in ("succeeded", "failed"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"no finished quality report at {url}: {body}")


@pytest.fixture
def reports_on_upload():
    settings = get_settings()
    before, settings.quality_reports = settings.quality_reports, True
    yield
    settings.quality_reports = before


@pytest.fixture(scope="module")
def planted():
    return load_benchmark("data_quality").build(rows=120, seed=2)


def test_an_upload_gets_a_report_with_its_duplicates_and_label_issues(
        client, upload, worker, reports_on_upload, planted):
    train, _, within, _, flipped = planted
    created = upload(_csv(train), "planted.csv")
    assert created.status_code == 201, created.text
    ds = created.json()
    assert ds["quality"]["status"] == "queued" and ds["status"] == "ready"
    ds = _wait(client, f"/v1/datasets/{ds['id']}")
    summary = ds["quality"]["summary"]
    assert ds["quality"]["status"] == "succeeded", ds["quality"]
    assert summary["exact_duplicate_groups"] >= 1 and summary["near_duplicate_groups"] >= 1
    assert summary["label_issues"] >= 1 and summary["warnings"]
    report = client.get(f"/v1/datasets/{ds['id']}/quality").json()
    assert report["object"] == "quality_report" and report["against"] is None
    lines = {}
    for kind in ("exact", "near"):
        for group in report["details"]["duplicates"][kind]["examples"]:
            for r in group:
                lines.setdefault(r["line"], set()).update(x["line"] for x in group)
    assert all(copy + 2 in lines.get(original + 2, ()) for original, copy in within)
    flagged = {r["line"] - 2 for r in report["details"]["label_issues"]["rows"]}
    assert len(flagged & flipped) >= 0.7 * len(flipped)
    listed = client.get("/v1/datasets", params={"limit": 100}).json()["data"]
    assert next(d for d in listed if d["id"] == ds["id"])["quality"]["id"] == report["id"]


def test_a_report_across_training_and_validation_finds_the_copies(client, upload, worker,
                                                                  planted):
    train, val, _, across, _ = planted
    train_id = upload(_csv(train), "train.csv").json()["id"]
    val_id = upload(_csv(val), "validation.csv").json()["id"]
    asked = client.post(f"/v1/datasets/{train_id}/quality", json={"against": val_id})
    assert asked.status_code == 202, asked.text
    assert asked.json()["against"] == val_id and asked.json()["status"] == "queued"
    again = client.post(f"/v1/datasets/{train_id}/quality", json={"against": val_id})
    assert again.json()["id"] == asked.json()["id"]  # one queued report answers
    report = _wait(client, f"/v1/datasets/{train_id}/quality", {"against": val_id})
    assert report["status"] == "succeeded", report
    pairs = {(p["row"]["line"], p["against_row"]["line"]) for p in report["details"]["pairs"]}
    assert {(i + 2, j + 2) for i, j in across} <= pairs
    assert report["summary"]["against_rows_with_duplicates"] >= len(across)


def test_refused_requests(client, upload):
    text = upload(toy_csv(20)).json()["id"]
    images = upload((FIXTURES / "digits" / "digits-train.zip").read_bytes(), "d.zip").json()["id"]
    same = client.post(f"/v1/datasets/{text}/quality", json={"against": text})
    assert same.status_code == 422 and same.json()["error"]["param"] == "against"
    other_task = client.post(f"/v1/datasets/{text}/quality", json={"against": images})
    assert other_task.status_code == 422 and "task" in other_task.json()["error"]["message"]
    missing = client.post(f"/v1/datasets/{text}/quality", json={"against": "ds_nope"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "against"
    assert client.post("/v1/datasets/ds_nope/quality").status_code == 404
    assert client.post(f"/v1/datasets/{text}/quality", json={"other": 1}).status_code == 422
    none_yet = client.get(f"/v1/datasets/{text}/quality")
    assert none_yet.status_code == 404 and "POST" in none_yet.json()["error"]["message"]
    assert client.get(f"/v1/datasets/{text}").json()["quality"] is None


def _queued_report(dataset_id: str) -> str:
    """A queued report row with no message sent: this process computes it."""
    with session_scope() as s:
        row = QualityReport(id=new_id("dq"), tenant_id=get_settings().default_tenant,
                            dataset_id=dataset_id, status="queued")
        s.add(row)
        return row.id


def test_a_failed_report_leaves_the_dataset_ready(client, upload, monkeypatch):
    ds = upload(toy_csv(30)).json()
    monkeypatch.setattr(get_settings(), "quality_text_model", "no-such-model")
    report_id = _queued_report(ds["id"])
    run_quality(report_id, "test-worker")
    after = client.get(f"/v1/datasets/{ds['id']}").json()
    assert after["status"] == "ready" and after["quality"]["status"] == "failed"
    assert after["quality"]["error"]["code"] == "quality_error"
    assert "no-such-model" in after["quality"]["error"]["message"]


def test_odd_data_gets_a_report(client, upload):
    odd = b"text,label\nsame,a\nsame,b\nSAME!,a\nlonely,c\n"  # copies with other labels
    ds = upload(odd, "odd.csv").json()
    report_id = _queued_report(ds["id"])
    run_quality(report_id, "test-worker")
    report = client.get(f"/v1/datasets/{ds['id']}/quality").json()
    assert report["status"] == "succeeded", report
    assert report["details"]["duplicates"]["exact"]["conflicting_labels"] == 1
    assert report["details"]["label_issues"]["count"] is None  # too few rows: said, not faked


def test_a_capped_dataset_is_a_seeded_sample():
    kept, total = sample_rows(iter(range(1000)), 50)
    again, _ = sample_rows(iter(range(1000)), 50)
    assert total == 1000 and len(kept) == 50 and kept == again
    assert [i for i, _ in kept] == sorted(i for i, _ in kept)
    assert sample_rows(iter(range(7)), 50) == ([(i, i) for i in range(7)], 7)


def test_a_dead_workers_report_fails_and_a_new_one_can_be_asked_for(client, upload,
                                                                     monkeypatch):
    from app.datasets import quality

    ds = upload(toy_csv(20)).json()
    report_id = _queued_report(ds["id"])
    assert quality.claim(report_id, "gone-host:1", lease_s=3600)
    # two hours on, for this process only: the lease lapsed (the session's worker, on the real
    # clock, leaves it alone, so the expiry is this call's to see)
    later = utcnow() + timedelta(hours=2)
    monkeypatch.setattr("app.leased.utcnow", lambda: later)
    assert report_id in quality.expire_leases()
    monkeypatch.undo()
    failed = client.get(f"/v1/datasets/{ds['id']}").json()["quality"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
    assert not quality.succeed(report_id, "gone-host:1", {}, {})  # its late write changes nothing
    again = client.post(f"/v1/datasets/{ds['id']}/quality")
    assert again.status_code == 202 and again.json()["id"] != report_id
    assert client.get(f"/v1/datasets/{ds['id']}").json()["quality"]["id"] == again.json()["id"]
