"""The transfer gain, measured through the API: scikit-learn's digits (tests/fixtures/digits, 300
training images, 30 a class; 1,497 held out) on MobileNetV2 with ImageNet weights (`head` and
`full`) vs the same architecture from random weights (uploaded as the user's own base model).

    .venv/bin/python benchmarks/transfer_gain.py [--epochs 8] [--image-size 64]
"""
import argparse
import base64
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _service  # noqa: E402
from _service import ROOT, serve  # noqa: E402

DIGITS = ROOT / "tests" / "fixtures" / "digits"


def call(base: str, path: str, body: dict | None = None, raw: bytes | None = None,
         ctype: str | None = None) -> dict:
    return _service.call(base, path, body, raw, {"Content-Type": ctype} if ctype else None)


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    b = "adapttransferboundary"
    parts = [f"--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
             for k, v in fields.items()]
    parts.append(f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}"
                 f"\"\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def heldout_accuracy(base: str, model: str) -> float:
    with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as zf:
        items = [(zf.read(n), n.split("/")[0]) for n in zf.namelist()]
    correct = 0
    for i in range(0, len(items), 256):
        batch = items[i:i + 256]
        preds = call(base, f"/v1/models/{model}/predict", {"inputs": [
            {"image_base64": base64.b64encode(b).decode()} for b, _ in batch]})["predictions"]
        correct += sum(p["label"] == y for p, (_, y) in zip(preds, batch, strict=True))
    return correct / len(items)


def run_job(base: str, ds: str, base_model: str, method: str, args) -> dict:
    job = call(base, "/v1/jobs", {"base_model": base_model, "training_dataset": ds,
                                  "method": method, "seed": 0, "validation_split": 0.1,
                                  "hyperparameters": {"epochs": args.epochs,
                                                      "image_size": args.image_size}})
    t0 = time.time()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(2)
        job = call(base, f"/v1/jobs/{job['id']}")
    if job["status"] != "succeeded":
        raise SystemExit(f"{base_model} {method}: {job['status']} {job['error']}")
    return {"base_model": base_model, "method": method, "wall_s": round(time.time() - t0, 1),
            "heldout_accuracy": round(heldout_accuracy(base, job["model"]), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--port", type=int, default=8766)
    args = p.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="adapt-transfer-"))
    with serve(args.port, data_dir, env={"ADAPT_AUTH": "off"}) as base:
        body, ctype = multipart({}, "digits.zip", (DIGITS / "digits-train.zip").read_bytes())
        ds = call(base, "/v1/datasets", raw=body, ctype=ctype)["id"]
        import torch
        import torchvision
        from safetensors.torch import save_file

        torch.manual_seed(0)
        random_init = data_dir / "random.safetensors"
        save_file(torchvision.models.mobilenet_v2().state_dict(), str(random_init))
        body, ctype = multipart({"architecture": "mobilenet_v2", "name": "random init"},
                                "random.safetensors", random_init.read_bytes())
        scratch = call(base, "/v1/base-models", raw=body, ctype=ctype)["id"]
        rows = [run_job(base, ds, "mobilenet-v2-imagenet", "head", args),
                run_job(base, ds, "mobilenet-v2-imagenet", "full", args),
                run_job(base, ds, scratch, "full", args)]
    print(json.dumps(rows, indent=2))
    gain = rows[1]["heldout_accuracy"] - rows[2]["heldout_accuracy"]
    print(f"\ndigits, {args.epochs} epochs at {args.image_size}px, 270 training images: held-out "
          f"accuracy ImageNet head {rows[0]['heldout_accuracy']:.3f}, ImageNet full "
          f"{rows[1]['heldout_accuracy']:.3f}, random-init full {rows[2]['heldout_accuracy']:.3f}"
          f" → transfer gain {gain * 100:+.1f} points")


if __name__ == "__main__":
    main()
