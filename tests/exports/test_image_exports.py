"""An image model's ONNX exports: int8 (static quantisation calibrated on training images) and
fp32, measured by the worker; the archive's own README code, run on held-out images with
preprocess.json, gives the labels predict gives (fp32: every one; int8 may differ where the
quantised network does, which its `agreement` reports)."""
import base64
import io
import re
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from helpers import wait_for_job
from test_exports import wait_for_export

DIGITS = Path(__file__).resolve().parents[1] / "fixtures" / "digits"


@pytest.fixture(scope="module")
def digits_model(client, worker) -> str:
    ds = client.post("/v1/datasets", files={"file": (
        "digits.zip", (DIGITS / "digits-train.zip").read_bytes())}).json()
    job = client.post("/v1/jobs", json={
        "base_model": "mobilenet-v2-imagenet", "training_dataset": ds["id"], "method": "head",
        "hyperparameters": {"image_size": 64, "epochs": 2, "learning_rate": 3e-3},
        "seed": 0}).json()
    job = wait_for_job(client, job["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    return job["model"]


@pytest.mark.parametrize("quantize", ["int8", None])
def test_an_image_export_runs_as_its_readme_says_to_the_labels_predict_gives(
        client, digits_model, quantize, tmp_path, monkeypatch):
    res = client.post(f"/v1/models/{digits_model}/exports",
                      json={"format": "onnx", "quantize": quantize})
    export = wait_for_export(client, res.json()["id"], timeout=300)
    assert export["status"] == "succeeded", export["error"]
    ev = export["evaluation"]
    assert ev["examples"] > 0 and 0 <= ev["export"]["accuracy"] <= 1
    if quantize:
        assert ev["export"]["size_bytes"] < ev["original"]["size_bytes"] / 2
        return
    assert ev["delta"]["agreement"] == 1.0
    archive = client.get(f"/v1/exports/{export['id']}/download").content
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        z.extractall(tmp_path)
    code = re.search(r"```python\n(.*?)```", (tmp_path / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as z:
        images = [z.read(n) for n in sorted(z.namelist()) if n.endswith(".png")][::150]
    printed = []
    for image in images:
        (tmp_path / "photo.jpg").write_bytes(image)  # the README's file name; Pillow sniffs PNG
        out = io.StringIO()
        with redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the export's own README
        printed.append(out.getvalue().strip())
    api = client.post(f"/v1/models/{digits_model}/predict", json={"inputs": [
        {"image_base64": base64.b64encode(i).decode()} for i in images]}).json()
    same = sum(a == p["label"] for a, p in zip(printed, api["predictions"], strict=True))
    assert same == len(images), (printed, api["predictions"])
