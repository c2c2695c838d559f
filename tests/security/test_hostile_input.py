"""Hostile and malformed input: every parser answers a clear 4xx, never a 500, with memory and
disk bounded; nothing is written outside the data directory."""
import json

import pytest
from helpers import toy_csv

from app.config import get_settings


def stored(environment) -> set:
    return {p for p in environment.data_dir.rglob("*") if p.is_file() and "tmp" not in p.parts
            and p.suffix in (".csv", ".jsonl")}


@pytest.mark.parametrize("content,needle", [
    (b"text,label\nfine,a\nbad\x00byte,b\n", "NUL"),
    (b"text,label\n" + b"x" * (5 << 20) + b",a\n", "longer than"),          # one 5 MB line
    ("text,label\n" + "y" * 150_000 + ",a\nok,b\n", "longer than"),         # a huge field
    (b'{"text": "a", "label": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "not valid JSON"),
    (b'{"text": "a", "label": "x"}\n' + b'{"text": "b", "label": ' + b"9" * 10_000 + b"}\n",
     "not valid JSON"),
    (b'"just a string"\n{"text": "a", "label": "x"}\n', "JSON object"),
    (b'{"text": 5, "label": "x"}\n{"text": "b", "label": "y"}\n', "text must be a string"),
    (b'{"text": "a", "label": {"nested": 1}}\n{"text": "b", "label": "y"}\n', "missing label"),
])
def test_malformed_files_are_422_and_leave_nothing(client, environment, content, needle):
    content = content.encode() if isinstance(content, str) else content
    name = "x.jsonl" if content.lstrip().startswith((b"{", b'"')) else "x.csv"
    before = stored(environment)
    res = client.post("/v1/datasets", files={"file": (name, content)})
    assert res.status_code == 422, res.text[:300]
    body = res.json()["error"]
    assert needle in body["message"] + json.dumps(body["details"]), body
    assert stored(environment) == before


@pytest.mark.parametrize("content,rows", [
    (b"\xef\xbb\xbftext,label\r\na,x\r\nb,y\n", 2),               # BOM, mixed CRLF and LF
    (b"text,label\ra,x\rb,y\r", 2),                               # old Mac CR newlines
    (b"text;label\nbonjour, le monde;x\nb;y\n", 2),                # semicolon-delimited
    (b"text\tlabel\nhello, world\tx\nb\ty\n", 2),                  # tab-delimited
    (b'text,label\n"quoted ""inner"" text",x\nb,y\n', 2),
])
def test_the_usual_csv_variants_are_read_correctly(client, content, rows):
    res = client.post("/v1/datasets", files={"file": ("v.csv", content)})
    assert res.status_code == 201, res.text
    assert res.json()["num_examples"] == rows and res.json()["labels"] == ["x", "y"]


def test_names_with_path_traversal_are_only_names(client, environment):
    res = client.post("/v1/datasets", files={"file": ("../../../../etc/evil.csv", toy_csv(6))},
                      data={"name": "../../../tmp/evil", "text_column": "text"})
    assert res.status_code == 201
    ds = res.json()
    assert ds["name"] == "../../../tmp/evil"  # kept as a label, never used as a path
    files = [p for p in environment.data_dir.rglob("*") if ds["id"] in str(p) and p.is_file()]
    assert len(files) == 1 and environment.data_dir.resolve() in files[0].resolve().parents
    job = client.post("/v1/jobs", json={"base_model": "tiny-bert", "training_dataset": ds["id"],
                                        "suffix": "../../x"})
    assert job.status_code == 422 and job.json()["error"]["param"] == "suffix"


def test_json_body_over_the_limit_is_413(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "max_json_bytes", 10_000)
    res = client.post("/v1/models/mdl_x/predict", json={"inputs": ["a" * 20_000]})
    assert res.status_code == 413 and res.json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b" " * 1000

    res = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413


def test_an_upload_streamed_past_the_limit_is_413_and_nothing_stays(client, environment,
                                                                    monkeypatch):
    monkeypatch.setattr(environment, "max_upload_bytes", 200_000)
    before = stored(environment)
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.csv\"\r\n\r\ntext,label\r\n").encode()

    def body():
        yield head
        for _ in range(100):  # 1 MB of rows, sent without a Content-Length
            yield b"some review text,a\r\n" * 500

    res = client.post("/v1/datasets", content=body(),
                      headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert res.status_code == 413, res.text
    assert stored(environment) == before
    assert not any((environment.data_dir / "blobs" / "tmp").iterdir())


@pytest.mark.parametrize("ctype,body", [
    ("text/plain", b'{"base_model": "x"}'),
    ("application/xml", b"<job/>"),
    ("multipart/form-data; boundary=zz", b"--zz--"),
    ("application/json", b"\xff\xfe\x00"),
])
def test_malformed_content_types_on_json_routes_are_4xx(client, ctype, body):
    res = client.post("/v1/jobs", content=body, headers={"content-type": ctype})
    assert 400 <= res.status_code < 500 and "error" in res.json()


def test_upload_without_a_file_or_with_bad_form_is_4xx(client):
    assert client.post("/v1/datasets", data={"name": "x"}).status_code == 422
    res = client.post("/v1/datasets", content=b"--x\r\nbroken",
                      headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= res.status_code < 500


@pytest.mark.parametrize("path", ["/v1/admin/keys?tenant=%00", "/v1/jobs?after=job_%00",
                                  "/v1/datasets?after=%00x", "/v1/models/mdl_%00"])
def test_nul_bytes_in_queries_and_ids_are_never_a_500(client, path):
    """PostgreSQL refuses NUL bytes in text: that is the request's fault (422), not the server's;
    SQLite stores them, so there the lookup simply finds nothing."""
    res = client.get(path)
    assert res.status_code in (200, 404, 422), res.text
    assert res.json().get("error", {}).get("code") != "internal_error"
