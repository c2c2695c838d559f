"""Image classification through a real worker: ZIP datasets (and hostile ones), the bundled
ImageNet MobileNetV2, predict with base64 and multipart images, and bring-your-own weights."""
import base64
import io
import os
import pickle
import random
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import torch
import torchvision
from helpers import wait_for_job
from PIL import Image
from safetensors.torch import save_file

from conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("worker")
DIGITS = FIXTURES / "digits"


def zip_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


def png(color: int = 128, size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (color, color, color)).save(out, format="PNG")
    return out.getvalue()


def heldout(n: int, seed: int = 0) -> list[tuple[bytes, str]]:
    with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as zf:
        names = random.Random(seed).sample(zf.namelist(), n)
        return [(zf.read(name), name.split("/")[0]) for name in names]


@pytest.fixture(scope="module")
def digits(client):
    res = client.post("/v1/datasets", files={"file": ("digits.zip",
                                                      (DIGITS / "digits-train.zip").read_bytes())})
    assert res.status_code == 201, res.text
    return res.json()


def test_an_image_zip_becomes_a_dataset(digits):
    assert digits["task"] == "image-classification" and digits["format"] == "zip"
    assert digits["num_examples"] == 300 and digits["labels"] == [str(d) for d in range(10)]
    assert set(digits["class_counts"].values()) == {30}


def test_a_single_top_folder_is_allowed(client):
    res = client.post("/v1/datasets", files={"file": ("pets.zip", zip_bytes(
        {"pets/cat/1.png": png(10), "pets/dog/2.png": png(200), "pets/.DS_Store": b"x"}))})
    assert res.status_code == 201, res.text
    assert res.json()["class_counts"] == {"cat": 1, "dog": 1}


def bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/ok.png", png())
        with zf.open("b/bomb.png", "w", force_zip64=True) as f:
            zero = bytes(1 << 20)
            for _ in range(1024):  # expands to 1 GiB, ~1 MB compressed
                f.write(zero)
    return buf.getvalue()


@pytest.mark.parametrize("name,content,status,needle", [
    ("evil.zip", lambda: zip_bytes({"a/1.png": png(), "../evil.png": png()}), 422, ".."),
    ("abs.zip", lambda: zip_bytes({"a/1.png": png(), "/tmp/evil.png": png()}), 422, "absolute"),
    ("link.zip", lambda: zip_bytes({"a/1.png": png(), "b/2.png": png()},
                                   {"b/link.png": "/etc/passwd"}), 422, "symbolic link"),
    ("bomb.zip", bomb, 422, "bomb"),
    ("corrupt.zip", lambda: zip_bytes({"a/1.png": png(), "b/broken.jpg": b"\xff\xd8\xff\xe0"
                                       + b"garbage" * 50}), 422, "b/broken.jpg"),
    ("one.zip", lambda: zip_bytes({"a/1.png": png(), "a/2.png": png()}), 422, "2 class"),
    ("flat.zip", lambda: zip_bytes({"1.png": png(), "2.png": png()}), 422, "folder per class"),
    ("text.zip", lambda: zip_bytes({"a/1.png": png(), "b/readme.txt": b"hi"}), 422, "not an image"),
    ("notzip.zip", lambda: b"PK\x03\x04 this is not really a zip", 422, "not a readable ZIP"),
])
def test_hostile_zips_are_refused_and_nothing_is_written(client, environment, name, content,
                                                         status, needle):
    def stored() -> set[Path]:  # dataset blobs only: jobs of earlier tests may still write
        # (and remove) their own files meanwhile, under work/ and in checkpoints
        root = environment.data_dir / "blobs" / "datasets"
        return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    before = stored()
    res = client.post("/v1/datasets", files={"file": (name, content())})
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert needle in err["message"] + str(err["details"]), err
    assert stored() - before == set()  # nothing stored as a dataset
    assert not Path("/tmp/evil.png").exists() and not (environment.data_dir / "evil.png").exists()


@pytest.fixture(scope="module")
def digits_model(client, digits):
    res = client.post("/v1/jobs", json={
        "base_model": "mobilenet-v2-imagenet", "training_dataset": digits["id"], "method": "head",
        "hyperparameters": {"image_size": 64, "epochs": 4, "learning_rate": 3e-3}, "seed": 0})
    assert res.status_code == 201, res.text
    job = wait_for_job(client, res.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    return job


def test_mobilenet_head_learns_digits_and_predicts_base64_and_multipart(client, digits_model):
    assert digits_model["hyperparameters"]["image_size"] == 64
    sample = heldout(100)
    out = client.post(f"/v1/models/{digits_model['model']}/predict", json={
        "inputs": [{"image_base64": base64.b64encode(b).decode()} for b, _ in sample]})
    assert out.status_code == 200, out.text
    preds = [p["label"] for p in out.json()["predictions"]]
    accuracy = sum(p == y for p, (_, y) in zip(preds, sample, strict=True)) / len(sample)
    assert accuracy >= 0.5, accuracy  # chance is 0.10
    files = [("files", (f"{i}.png", b, "image/png")) for i, (b, _) in enumerate(sample[:5])]
    multi = client.post(f"/v1/models/{digits_model['model']}/predict", files=files,
                        data={"top_k": "3"})
    assert multi.status_code == 200, multi.text
    assert [p["label"] for p in multi.json()["predictions"]] == preds[:5]
    assert len(multi.json()["predictions"][0]["top"]) == 3


@pytest.mark.parametrize("inputs,param", [
    (["a text for an image model"], "inputs.0"),
    ([{"image_base64": "%%% not base64"}], "inputs.0.image_base64"),
    ([{"image_base64": base64.b64encode(b"not an image").decode()}], "inputs.0"),
])
def test_bad_images_for_predict_are_422(client, digits_model, inputs, param):
    res = client.post(f"/v1/models/{digits_model['model']}/predict", json={"inputs": inputs})
    assert res.status_code == 422 and res.json()["error"]["param"] == param, res.text


def flat_png(width: int, height: int, mode: str = "1") -> bytes:
    """A large-dimension image in a tiny file: a flat 1-bit image compresses ~1000:1."""
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG", optimize=False)
    return out.getvalue()


def test_huge_images_are_refused_from_their_header_before_decoding(client, digits_model):
    """16 PNGs of 39 megapixels (a few KB each): refused at once, nothing decoded."""
    big = flat_png(6245, 6245)
    assert len(big) < 100_000
    files = [("files", (f"{i}.png", big, "image/png")) for i in range(16)]
    rss = psutil.Process().memory_info().rss
    t0 = time.monotonic()
    res = client.post(f"/v1/models/{digits_model['model']}/predict", files=files)
    elapsed = time.monotonic() - t0
    grew = psutil.Process().memory_info().rss - rss
    assert res.status_code == 422, res.text
    err = res.json()["error"]
    assert (err["code"], err["param"]) == ("image_too_large", "inputs.0"), err
    assert "6245×6245" in err["message"] and "megapixels" in err["message"], err
    assert elapsed < 10, elapsed  # generous on a busy machine: the RSS check is the proof
    assert grew < 64 << 20, f"RSS grew {grew >> 20} MiB"  # one decoded image alone is 117 MiB


def test_a_predict_request_has_a_pixel_budget(client, digits_model):
    """Each image under the per-image cap, all of them together over the request's budget."""
    img = flat_png(2100, 2100)  # 4.4 MP; 16 of them are 70.6 MP > 64 MP
    files = [("files", (f"{i}.png", img, "image/png")) for i in range(16)]
    t0 = time.monotonic()
    res = client.post(f"/v1/models/{digits_model['model']}/predict", files=files)
    assert res.status_code == 422, res.text
    assert time.monotonic() - t0 < 10
    err = res.json()["error"]
    assert (err["code"], err["param"]) == ("too_many_pixels", "inputs.14"), err
    assert "64 (send fewer" in err["message"], err


def test_a_dataset_image_above_the_pixel_cap_is_named(client):
    res = client.post("/v1/datasets", files={"file": ("big.zip", zip_bytes(
        {"a/ok.png": png(), "b/huge.png": flat_png(6000, 5000)}))})
    assert res.status_code == 422, res.text
    err = res.json()["error"]
    assert "b/huge.png" in err["message"] and "30.0 megapixels" in err["message"], err


def test_image_checkpoint_loads_with_torchvision_as_it_is(client, digits_model, tmp_path):
    ckpt = client.get(f"/v1/jobs/{digits_model['id']}/checkpoints").json()["data"][-1]
    with zipfile.ZipFile(io.BytesIO(client.get(f"/v1/checkpoints/{ckpt['id']}/content").content)) as zf:
        zf.extractall(tmp_path)
    from safetensors.torch import load_file

    net = torchvision.models.mobilenet_v2(num_classes=10)
    net.load_state_dict(load_file(str(tmp_path / "model.safetensors")))


def own_network(tmp_path) -> dict[str, torch.Tensor]:
    """A user's network: a small torchvision model trained a few steps on its own 3 classes."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 64, 64)),
                                                 torch.randint(0, 3, (4,)))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return net.state_dict()


def test_bring_your_own_weights_as_safetensors_and_pth(client, digits, tmp_path):
    state = own_network(tmp_path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "mine.safetensors"))
    torch.save(state, tmp_path / "mine.pth")
    for filename in ("mine.safetensors", "mine.pth"):
        res = client.post("/v1/base-models", data={"architecture": "mobilenet_v3_small",
                                                   "name": filename},
                          files={"file": (filename, (tmp_path / filename).read_bytes())})
        assert res.status_code == 201, res.text
        bm = res.json()
        assert bm["id"].startswith("bm_") and bm["source"] == "uploaded"
        assert bm["id"] in [m["id"] for m in client.get("/v1/base-models").json()["data"]]
        job = client.post("/v1/jobs", json={
            "base_model": bm["id"], "training_dataset": digits["id"], "method": "full",
            "hyperparameters": {"image_size": 64, "epochs": 1, "batch_size": 32}})
        assert job.status_code == 201, job.text
        done = wait_for_job(client, job.json()["id"], timeout=300)
        assert done["status"] == "succeeded", done["error"]


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/adapt-pwned",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(client, tmp_path):
    Path("/tmp/adapt-pwned").unlink(missing_ok=True)
    payload = pickle.dumps({"features.0.0.weight": RunsCode()})
    for filename, data in (("evil.pth", payload), ("evil.pt", _torch_pickle(tmp_path))):
        res = client.post("/v1/base-models", data={"architecture": "mobilenet_v3_small"},
                          files={"file": (filename, data)})
        assert res.status_code == 422 and res.json()["error"]["code"] == "weights_invalid", res.text
    assert not Path("/tmp/adapt-pwned").exists()


def _torch_pickle(tmp_path) -> bytes:
    torch.save({"w": RunsCode()}, tmp_path / "evil.pt")
    return (tmp_path / "evil.pt").read_bytes()


def test_weights_that_do_not_fit_the_architecture_list_the_keys(client, tmp_path):
    state = torchvision.models.resnet18(num_classes=4).state_dict()
    save_file(state, str(tmp_path / "r.safetensors"))
    res = client.post("/v1/base-models", data={"architecture": "mobilenet_v3_small"},
                      files={"file": ("r.safetensors", (tmp_path / "r.safetensors").read_bytes())})
    assert res.status_code == 422 and res.json()["error"]["code"] == "weights_mismatch"
    messages = {d["message"] for d in res.json()["error"]["details"]}
    assert {"missing", "unexpected"} <= messages
    bad = client.post("/v1/base-models", data={"architecture": "vgg-9000"},
                      files={"file": ("r.safetensors", b"xx")})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "architecture"
    junk = client.post("/v1/base-models", data={"architecture": "resnet18"},
                       files={"file": ("j.safetensors", b"\x00" * 64)})
    assert junk.status_code == 422 and junk.json()["error"]["code"] == "weights_invalid"


def test_a_missing_torchvision_weights_file_is_named(client, digits):
    res = client.post("/v1/jobs", json={"base_model": "resnet18-imagenet",
                                        "training_dataset": digits["id"]})
    assert res.status_code == 422 and "resnet18-f37072fd.pth" in res.json()["error"]["message"]


def test_text_and_image_models_do_not_mix(client, digits):
    res = client.post("/v1/jobs", json={"base_model": "minilm-l6-v2",
                                        "training_dataset": digits["id"]})
    assert res.status_code == 422 and res.json()["error"]["code"] == "task_mismatch"


def test_bring_your_own_text_encoder_with_its_config(client, tiny_model, tmp_path):
    """A user's own BERT (here: the tiny one, saved as a plain state dict with a `bert.` prefix, as
    a model with a head saves it) plus its transformers config; fine-tuned like any base model."""
    import json

    from safetensors.torch import load_file

    from helpers import toy_csv

    state = {f"bert.{k}": v for k, v in load_file(str(tiny_model / "model.safetensors")).items()}
    save_file(state, str(tmp_path / "enc.safetensors"))
    config = json.loads((tiny_model / "config.json").read_text())
    res = client.post("/v1/base-models", data={"architecture": "bert", "config": json.dumps(config),
                                               "name": "my bert"},
                      files={"file": ("enc.safetensors", (tmp_path / "enc.safetensors").read_bytes())})
    assert res.status_code == 201, res.text
    bm = res.json()
    assert bm["task"] == "text-classification" and bm["source"] == "uploaded"
    ds = client.post("/v1/datasets", files={"file": ("t.csv", toy_csv(80))}).json()
    job = client.post("/v1/jobs", json={"base_model": bm["id"], "training_dataset": ds["id"],
                                        "hyperparameters": {"epochs": 2, "batch_size": 8,
                                                            "learning_rate": 3e-3}})
    assert job.status_code == 201, job.text
    done = wait_for_job(client, job.json()["id"])
    assert done["status"] == "succeeded" and done["metrics"]["val_accuracy"] >= 0.9, done

    wrong = dict(config, hidden_size=64, intermediate_size=128)
    res = client.post("/v1/base-models", data={"architecture": "bert", "config": json.dumps(wrong)},
                      files={"file": ("enc.safetensors", (tmp_path / "enc.safetensors").read_bytes())})
    assert res.status_code == 422 and res.json()["error"]["code"] == "weights_mismatch"
    assert any("shape" in d["message"] for d in res.json()["error"]["details"])
    res = client.post("/v1/base-models", data={"architecture": "bert", "config": "{not json"},
                      files={"file": ("enc.safetensors", b"x")})
    assert res.status_code == 422 and res.json()["error"]["param"] == "config"


def test_partial_unfreezes_the_last_blocks_and_trains(client, digits):
    res = client.post("/v1/jobs", json={
        "base_model": "mobilenet-v2-imagenet", "training_dataset": digits["id"],
        "method": "partial", "hyperparameters": {"image_size": 48, "epochs": 1,
                                                 "unfreeze_layers": 2, "augment": 1}})
    assert res.status_code == 201, res.text
    assert res.json()["hyperparameters"]["unfreeze_layers"] == 2
    job = wait_for_job(client, res.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    lora = client.post("/v1/jobs", json={"base_model": "mobilenet-v2-imagenet",
                                         "training_dataset": digits["id"], "method": "lora"})
    assert lora.status_code == 422 and "text models only" in lora.json()["error"]["message"]


def test_image_explanations_are_heatmaps_at_the_input_resolution(client, digits_model):
    """Base64 and multipart; a wide image's heatmap covers only the centre crop the model saw."""
    (digit, label), = heldout(1, seed=3)
    wide = io.BytesIO()
    Image.open(io.BytesIO(digit)).convert("RGB").resize((48, 32)).save(wide, format="PNG")
    url = f"/v1/models/{digits_model['model']}/explain"
    res = client.post(url, json={"inputs": [{"image_base64": base64.b64encode(b).decode()}
                                            for b in (digit, wide.getvalue())], "target": label,
                           "steps": 8})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["method"] == "integrated_gradients" and body["steps"] == 8
    square, wide_ex = body["explanations"]
    assert square["target"] == wide_ex["target"] == label and "words" not in square
    maps = [Image.open(io.BytesIO(base64.b64decode(e["heatmap"]["png_base64"])))
            for e in (square, wide_ex)]
    assert [m.size for m in maps] == [(32, 32), (48, 32)]
    assert [(e["heatmap"]["width"], e["heatmap"]["height"]) for e in (square, wide_ex)] == \
        [(32, 32), (48, 32)]
    heat = torch.tensor(list(maps[1].getdata()), dtype=torch.float).view(32, 48)
    assert heat.max() == 255  # scaled per image
    # 48×32 → resized to 110×73, centre crop 64: the crop spans about columns 10–38 of 48
    assert heat[:, :9].max() == 0 and heat[:, 40:].max() == 0
    multi = client.post(url, files=[("files", ("d.png", digit, "image/png"))], data={"top_k": "2"})
    assert multi.status_code == 200, multi.text
    only = multi.json()["explanations"][0]
    assert only["target"] == only["label"] and len(only["top"]) == 2  # default: the prediction
    assert (only["heatmap"]["width"], only["heatmap"]["height"]) == (32, 32)


def test_an_image_model_is_not_asked_for_word_scores(client, digits_model):
    res = client.post(f"/v1/models/{digits_model['model']}/explain", json={"inputs": ["a seven"]})
    assert res.status_code == 422, res.text
    err = res.json()["error"]
    assert (err["code"], err["param"]) == ("wrong_input_kind", "inputs.0")
    assert "image model" in err["message"] and "word scores" in err["message"]
