"""/readyz: 200 when the database, broker and storage all answer; a 503 that names the failing
check otherwise (and a warning in the log, with the request's id)."""
import io
import json

from app.config import get_settings
from app.observability import configure_logging


def test_readyz_names_storage_when_the_data_dir_cannot_be_written(client, monkeypatch, tmp_path):
    # Tests run as root, which writes through read-only permissions: a data dir below a regular
    # file can't be created or written by anyone.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setattr(get_settings(), "data_dir", blocker / "data")
    buf = io.StringIO()
    configure_logging("json", stream=buf)
    try:
        res = client.get("/readyz", headers={"X-Request-ID": "probe-1"})
    finally:
        configure_logging("text")
    assert res.status_code == 503
    body = res.json()
    assert body["status"] == "unavailable" and body["failed"] == ["storage"]
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    assert body["checks"]["storage"].startswith("NotADirectoryError")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert any(line["logger"] == "app.ops" and line["level"] == "warning"
               and "storage" in line["message"] and line.get("request_id") == "probe-1"
               for line in lines)

    monkeypatch.undo()
    res = client.get("/readyz")
    assert res.status_code == 200 and res.json()["failed"] == []
