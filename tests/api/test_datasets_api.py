"""Uploading datasets: valid files are described exactly; bad ones get a clear 4xx, nothing kept."""
import json

import pytest
from helpers import toy_csv


def stored_files(settings) -> list:
    root = settings.data_dir / "blobs"
    return [p for p in root.rglob("*") if p.is_file() and "tmp" not in p.parts]


def test_csv_upload_is_hashed_counted_and_listed(client, upload):
    content = toy_csv(40)
    res = upload(content, "reviews.csv", name="my reviews")
    assert res.status_code == 201, res.text
    ds = res.json()
    import hashlib

    assert ds["object"] == "dataset" and ds["id"].startswith("ds_")
    assert ds["sha256"] == hashlib.sha256(content).hexdigest() and ds["bytes"] == len(content)
    assert ds["format"] == "csv" and ds["task"] == "text-classification"
    assert ds["num_examples"] == 40 and ds["labels"] == ["bad", "good"]
    assert ds["class_counts"] == {"bad": 20, "good": 20} and ds["name"] == "my reviews"
    assert client.get(f"/v1/datasets/{ds['id']}").json() == ds
    listed = client.get("/v1/datasets", params={"limit": 100}).json()
    assert listed["object"] == "list" and ds["id"] in [d["id"] for d in listed["data"]]


def test_jsonl_with_custom_columns(client, upload):
    lines = [json.dumps({"review": f"text {i}", "stars": "5" if i % 2 else "1"}) for i in range(10)]
    res = upload(("\n".join(lines) + "\n").encode(), "r.jsonl", text_column="review",
                 label_column="stars")
    assert res.status_code == 201, res.text
    assert res.json()["format"] == "jsonl" and res.json()["class_counts"] == {"1": 5, "5": 5}


def test_csv_with_quoted_multiline_fields_and_bom(client, upload):
    content = '\ufefftext,label\n"line one\nline two, with comma",a\nplain,b\n'.encode()
    res = upload(content, "multi.csv")
    assert res.status_code == 201, res.text
    assert res.json()["num_examples"] == 2


def test_pagination_is_newest_first_with_cursor(client, upload):
    ids = [upload(toy_csv(4, seed=i)).json()["id"] for i in range(3)]
    first = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in first["data"]] == ids[::-1][:2] and first["has_more"]
    second = client.get("/v1/datasets", params={"limit": 2, "after": first["data"][-1]["id"]}).json()
    assert second["data"][0]["id"] == ids[0]
    assert client.get("/v1/datasets", params={"limit": 0}).status_code == 422


@pytest.mark.parametrize("content,filename,form,status,param,needle", [
    (b"", "empty.csv", {}, 422, "file", "empty"),
    (b"text,stars\nfine,5\nbad,1\n", "nolabel.csv", {}, 422, "label_column", "no 'label' column"),
    ("text,label\ncaf\xe9,a\n".encode("latin-1"), "latin1.csv", {}, 422, "file", "UTF-8"),
    (b"text,label\none,x\ntwo,x\nthree,x\n", "oneclass.csv", {}, 422, "label_column", "2 classes"),
    (b"text,label\n", "header-only.csv", {}, 422, "file", "no examples"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "img.bin", {}, 422, "file", "UTF-8"),
    (b"text,label\na,x\nb,y\n", "t.csv", {"task": "image-classification"}, 422, "task", "text"),
    (b"text,label\na,x\nb,y\n", "t.csv", {"task": "summarize"}, 422, "task", "text-classification"),
    (b"PK\x03\x04rest-of-a-zip", "images.zip", {}, 422, "file", "not a readable ZIP"),
    (b"a\tb\n", "table.tsv", {}, 415, "file", "Unsupported file type"),
])
def test_bad_files_are_refused_clearly_and_leave_nothing(client, upload, environment, content,
                                                         filename, form, status, param, needle):
    def datasets() -> list[str]:  # by id: other datasets' quality reports move on meanwhile
        return [d["id"] for d in client.get("/v1/datasets", params={"limit": 100}).json()["data"]]

    before = datasets()
    files_before = stored_files(environment)
    res = upload(content, filename, **form)
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert err["param"] == param and needle in err["message"]
    assert datasets() == before
    assert stored_files(environment) == files_before
    assert not any((environment.data_dir / "blobs" / "tmp").iterdir())  # no staging left


def test_bad_rows_are_reported_by_line(client, upload):
    content = b'text,label\ngood row,a\n,b\nanother,\n"multi\nline",a\n   ,a\nok,b\n'
    res = upload(content, "rows.csv")
    assert res.status_code == 422
    details = res.json()["error"]["details"]
    assert details == [{"line": 3, "message": "empty text"},
                       {"line": 4, "message": "missing label"},
                       {"line": 7, "message": "empty text"}]


def test_jsonl_lines_that_are_not_objects_are_reported(client, upload):
    content = b'{"text": "a", "label": "x"}\n[1, 2]\n{"text": "b", "label": "y"}\n{broken\n'
    res = upload(content, "x.jsonl")
    assert res.status_code == 422
    assert [d["line"] for d in res.json()["error"]["details"]] == [2, 4]


def test_unknown_dataset_is_404_and_delete_removes_the_file(client, upload, environment):
    assert client.get("/v1/datasets/ds_nope").status_code == 404
    assert client.get("/v1/datasets/ds_nope").json()["error"]["code"] == "not_found"
    ds = upload(toy_csv(6)).json()
    path = environment.data_dir / "blobs" / "datasets"
    assert any(ds["id"] in str(p) for p in path.rglob("*"))
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 200
    assert client.get(f"/v1/datasets/{ds['id']}").status_code == 404
    assert not any(ds["id"] in str(p) for p in path.rglob("*") if p.is_file())
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 404


def test_upload_over_the_size_limit_is_413_and_kept_nowhere(client, upload, environment,
                                                             monkeypatch):
    monkeypatch.setattr(environment, "max_upload_bytes", 1000)
    files_before = stored_files(environment)
    res = upload(toy_csv(200))
    assert res.status_code == 413 and res.json()["error"]["code"] == "file_too_large"
    assert stored_files(environment) == files_before
