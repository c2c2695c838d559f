"""Labels: capped in length (both the fast CSV path and the row parser, a 422 naming the line),
Unicode-normalised the same way at upload and when the worker reads the file, and labels that
differ only in look-alike characters are accepted with a warning naming them."""
import json

import pytest

from app.config import get_settings
from app.datasets.parsing import read_examples


def csv_with(labels: list[str], n: int = 6) -> bytes:
    rows = [f"example text number {i},{labels[i % len(labels)]}" for i in range(n)]
    return ("text,label\n" + "\n".join(rows) + "\n").encode()


def jsonl_with(labels: list[str], n: int = 6) -> bytes:
    return "".join(json.dumps({"text": f"example {i}", "label": labels[i % len(labels)]}) + "\n"
                   for i in range(n)).encode()


@pytest.mark.parametrize("filename,make", [("l.csv", csv_with), ("l.jsonl", jsonl_with)])
def test_a_label_longer_than_the_cap_is_422_naming_the_line(upload, filename, make):
    cap = get_settings().max_label_chars
    assert cap == 100
    res = upload(make(["pos", "neg", "x" * (cap + 1)]), filename)
    assert res.status_code == 422, res.text
    err = res.json()["error"]
    assert err["code"] == "dataset_invalid"
    line = 4 if filename.endswith(".csv") else 3  # the third row; the CSV has a header line
    assert err["details"][0] == {"line": line, "message": f"label longer than {cap} characters"}
    assert upload(make(["pos", "neg", "x" * cap]), filename).status_code == 201


def test_a_100kb_label_is_refused_not_stored(upload):
    res = upload(csv_with(["pos", "y" * 100_000]))
    assert res.status_code == 422 and "label longer" in res.json()["error"]["message"]


@pytest.mark.parametrize("filename,make", [("z.csv", csv_with), ("z.jsonl", jsonl_with)])
def test_zero_width_and_compatibility_forms_are_one_class(upload, environment, filename, make):
    # "fresh", "fresh" + zero-width space, full-width "ｆｒｅｓｈ", and "stale" with a BOM inside
    res = upload(make(["fresh", "fresh\u200b", "\uff46\uff52\uff45\uff53\uff48", "st\ufeffale"],
                      n=8), filename)
    assert res.status_code == 201, res.text
    ds = res.json()
    assert ds["labels"] == ["fresh", "stale"] and ds["class_counts"] == {"fresh": 6, "stale": 2}
    assert ds["warnings"] == []
    # the worker's reader gives the same labels, so class indices match the dataset's
    stored = next(p for p in environment.data_dir.rglob("data.*") if ds["id"] in str(p))
    _, labels = read_examples(stored, ds["format"], "text", "label")
    assert sorted(set(labels)) == ds["labels"]


def test_look_alike_labels_are_accepted_with_a_warning_naming_both(upload, client):
    cyrillic = "fre\u0455h"  # Cyrillic dze, looks like s
    res = upload(csv_with(["fresh", cyrillic]))
    assert res.status_code == 201, res.text
    ds = res.json()
    assert sorted(ds["labels"]) == sorted(["fresh", cyrillic])
    assert len(ds["warnings"]) == 1
    assert "'fresh'" in ds["warnings"][0] and repr(cyrillic) in ds["warnings"][0]
    assert client.get(f"/v1/datasets/{ds['id']}").json()["warnings"] == ds["warnings"]
