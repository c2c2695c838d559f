"""The GPU check of issue 12, the Python half (benchmarks/gpu_check.sh prepares the machine and
samples nvidia-smi): side by side in one run, on one device,

  1. the plain hand-written loop (benchmarks/plain_pytorch_loop.py), text `full`;
  2. the recipe alone (app.ml.recipe, as the worker builds it), fp32 without length bucketing
     (the plain loop's batches) and with the defaults (bucketing, precision "auto");
  3. jobs through the service's HTTP API (`python -m app.serve`, embedded default, a fresh data
     directory): text `full` twice at each batch size (the first job on the fresh worker, then an
     identical second one) and image `full` (MobileNetV2) on a synthetic image-folder ZIP;

then one table: samples/s, the ratio to the plain loop at the same batch size, wall seconds, and
the GPU utilisation (mean / max of the samples taken while each phase ran).

Base models are random-init stand-ins built here (no weights can be fetched on the device
machine): MiniLM-L6's config and tokenizer (benchmarks/standins/minilm-l6-v2) with random
weights, served as the local model directory `minilm-l6-v2` (ADAPT_MODEL_DIRS), and a random-init
MobileNetV2 state dict under the file name the catalog looks for (ADAPT_VISION_WEIGHTS_DIR).
Throughput does not depend on the weights' values; the accuracies printed are meaningless.

    python benchmarks/gpu_check.py --device cuda --work /tmp/gpu-check --gpu-log gpu.csv
    python benchmarks/gpu_check.py --device cpu --quick --work /tmp/gpu-check   # a dry run
"""
import argparse
import contextlib
import csv
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import RT, call, run_job, serve, upload  # noqa: E402

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standins" / "minilm-l6-v2"
PHASES: list[dict] = []  # {"phase", "t0", "t1", and the results}


@contextlib.contextmanager
def phase(name: str, **info):
    row = {"phase": name, **info, "t0": time.time()}
    print(f"[{time.strftime('%H:%M:%S')}] {name} …", flush=True)
    yield row
    row["t1"] = time.time()
    row.setdefault("wall_s", round(row["t1"] - row["t0"], 1))
    PHASES.append(row)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: "
          f"{json.dumps({k: v for k, v in row.items() if k not in ('t0', 't1')})}", flush=True)


def text_files(work: Path, n_train: int, n_heldout: int) -> tuple[Path, Path]:
    """The first n_train reviews of the Rotten Tomatoes fixture (repeated past its 3,200) and the
    first n_heldout held-out ones."""
    rows = list(csv.DictReader(open(RT / "train.csv", encoding="utf-8")))
    rows = (rows * (n_train // len(rows) + 1))[:n_train]
    held = list(csv.DictReader(open(RT / "heldout.csv", encoding="utf-8")))[:n_heldout]
    out = []
    for name, data in (("train.csv", rows), ("heldout.csv", held)):
        with open(work / name, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows({"text": r["text"], "label": r["label"]} for r in data)
        out.append(work / name)
    return out[0], out[1]


# --text-size base: MiniLM's tokenizer on an encoder of BERT-base's (and mpnet-base's) size
BASE_SIZE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072}


def standin_text_model(work: Path, size: str = "minilm") -> Path:
    """MiniLM-L6's architecture and tokenizer with random weights, as a local model directory
    (size "base": a 12-layer, 768-wide encoder instead)."""
    import torch
    from transformers import AutoConfig, AutoModel

    target = work / "models" / "minilm-l6-v2"
    shutil.copytree(STANDIN, target, dirs_exist_ok=True)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(STANDIN, **(BASE_SIZE if size == "base" else {}))
    AutoModel.from_config(config).save_pretrained(target)
    return target


def standin_vision_weights(work: Path) -> Path:
    """A random-init MobileNetV2 state dict under the torchvision file name the catalog expects."""
    import torch
    import torchvision

    from app.ml.vision import weights_filename

    target = work / "vision"
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(),
               target / weights_filename("mobilenet_v2"))
    return target


def synthetic_images(work: Path, n: int, classes: int = 8, size: int = 400) -> Path:
    """An image-folder ZIP (class/NNNN.jpg): n noisy JPEGs whose mean colour depends on the class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    path = work / "images.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            c = i % classes
            base = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53) % 256], dtype=np.int16)
            px = np.clip(base + rng.integers(-60, 60, (size, size, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(px).save(buf, "JPEG", quality=85)
            zf.writestr(f"class{c}/{i:05d}.jpg", buf.getvalue())
    return path


def upload_zip(base: str, path: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/zip\r\n\r\n").encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return call(base, "/v1/datasets", raw=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def plain(args, files, batch: int) -> None:
    import plain_pytorch_loop

    with phase(f"plain loop b{batch}", kind="plain", batch=batch) as row:
        r = plain_pytorch_loop.run(*files, method="full", epochs=1, batch_size=batch,
                                   device=args.device)
        row.update(samples_per_s=round(r["samples_per_s"], 1),
                   train_s=round(r["train_seconds"], 1))


def recipe(args, train_csv: Path, model_dir: Path, batch: int, label: str, **hp_extra) -> None:
    from app.ml.config import TrainConfig, resolve_hyperparameters
    from app.ml.data import Splits
    from app.ml.recipe import BaseModelSpec, build_recipe

    rows = list(csv.DictReader(open(train_csv, encoding="utf-8")))
    labels = sorted({r["label"] for r in rows})
    x, y = [r["text"] for r in rows], [labels.index(r["label"]) for r in rows]
    n_val = len(x) // 10  # as a job holds out 10% for its validation
    precision = hp_extra.pop("precision", "auto")
    hp = resolve_hyperparameters("full", {"epochs": 1, "batch_size": batch, **hp_extra})
    cfg = TrainConfig(method="full", labels=labels, hyperparameters=hp, device=args.device,
                      precision=precision)
    with phase(f"recipe b{batch} {label}", kind="recipe", batch=batch) as row, \
            tempfile.TemporaryDirectory(dir=args.work) as wd:
        r = build_recipe(cfg, BaseModelSpec("text-classification", model_dir),
                         Splits(labels, x[n_val:], y[n_val:], x[:n_val], y[:n_val]),
                         work_dir=Path(wd))
        r.setup()
        s = r.train().state
        row.update(samples_per_s=round(s.samples_seen / s.elapsed_s, 1),
                   train_s=round(s.elapsed_s, 1))


def image_recipe(args, images: Path, weights: Path, batch: int, workers: int | None,
                 label: str) -> None:
    """MobileNetV2 `full` through the recipe, with decoding and augmentation in the training
    process (workers 0) or in DataLoader worker processes (None: the service's auto choice)."""
    import zipfile as zf

    from app.ml.config import TrainConfig, resolve_hyperparameters
    from app.ml.data import Splits
    from app.ml.recipe import BaseModelSpec, build_recipe

    members = sorted(n for n in zf.ZipFile(images).namelist() if n.endswith(".jpg"))
    labels = sorted({m.split("/")[0] for m in members})
    y = [labels.index(m.split("/")[0]) for m in members]
    n_val = len(members) // 10
    hp = resolve_hyperparameters("full", {"epochs": 1, "batch_size": batch, "augment": 1,
                                          "hflip": 1}, "image-classification")
    cfg = TrainConfig(method="full", labels=labels, hyperparameters=hp, device=args.device,
                      loader_workers=workers)
    with phase(f"image recipe b{batch} {label}", kind="recipe", batch=batch) as row, \
            tempfile.TemporaryDirectory(dir=args.work) as wd:
        r = build_recipe(cfg, BaseModelSpec("image-classification", weights, "mobilenet_v2"),
                         Splits(labels, members[n_val:], y[n_val:], members[:n_val], y[:n_val]),
                         work_dir=Path(wd), images_zip=images)
        r.setup()
        s = r.train().state
        row.update(samples_per_s=round(s.samples_seen / s.elapsed_s, 1),
                   train_s=round(s.elapsed_s, 1))


def job(base: str, label: str, batch: int, request: dict) -> None:
    with phase(label, kind="job", batch=batch) as row:
        j = run_job(base, request, poll_s=0.5)
        row.update(samples_per_s=j["progress"]["samples_per_second"], job=j["id"])
        if chosen := j["progress"].get("precision"):  # "auto": measured at the job's start
            row["phase"] += f" [{chosen}]"


def service(args, train_csv: Path, model_dir: Path, vision_dir: Path, images: Path | None) -> None:
    env = {"ADAPT_MODEL_DIRS": str(model_dir), "ADAPT_VISION_WEIGHTS_DIR": str(vision_dir),
           "ADAPT_WORKER_DEVICE": args.worker_device}
    data_dir = args.work / "service-data"
    data_dir.mkdir()
    t0 = time.time()
    with serve(args.port, data_dir=data_dir, env=env) as base:
        PHASES.append({"phase": "service start-up (to /readyz)", "kind": "startup",
                       "t0": t0, "t1": time.time(), "wall_s": round(time.time() - t0, 1)})
        print(f"service ready in {time.time() - t0:.1f} s", flush=True)
        ds = upload(base, train_csv)["id"]
        for batch in args.batches:
            for n in (1, 2):
                which = "first job on the fresh worker" if (batch, n) == (args.batches[0], 1) \
                    else f"job {n} at this batch size"
                job(base, f"service text b{batch} #{n} ({which})", batch, {
                    "base_model": "minilm-l6-v2", "training_dataset": ds, "method": "full",
                    "seed": 42, "hyperparameters": {"epochs": 1, "batch_size": batch}})
        if images is not None:
            ids = upload_zip(base, images)["id"]
            job(base, "service image mobilenet-v2 b64", None, {
                "base_model": "mobilenet-v2-imagenet", "training_dataset": ids, "method": "full",
                "seed": 42, "hyperparameters": {"epochs": 1, "batch_size": 64}})


def gpu_samples(path: Path | None) -> list[tuple[float, float, float]]:
    """(epoch seconds, utilisation %, memory MiB) from gpu_check.sh's sampler."""
    if path is None or not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            out.append((float(parts[0]), float(parts[1]), float(parts[2])))
        except (ValueError, IndexError):
            continue
    return out


def table(args) -> None:
    samples = gpu_samples(args.gpu_log)
    plain_rate = {r["batch"]: r["samples_per_s"] for r in PHASES if r["kind"] == "plain"}
    print(f"\nGPU check (issue 12): device {args.device}, torch {args.torch}, {args.gpu_name}")
    print(f"{'phase':64s} {'samples/s':>9s} {'×plain':>7s} {'wall s':>7s} {'GPU% mean':>9s} "
          f"{'max':>4s} {'n':>4s} {'MiB max':>8s}")
    for r in PHASES:
        win = [s for s in samples if r["t0"] <= s[0] <= r["t1"]]
        rate = r.get("samples_per_s")
        ratio = (f"{rate / plain_rate[r['batch']]:.2f}" if rate and plain_rate.get(r.get("batch"))
                 else "")
        util = (f"{statistics.mean(s[1] for s in win):9.0f} {max(s[1] for s in win):4.0f} "
                f"{len(win):4d} {max(s[2] for s in win):8.0f}" if win else
                f"{'-':>9s} {'-':>4s} {0:4d} {'-':>8s}")
        print(f"{r['phase'][:64]:64s} {rate if rate is not None else '':>9} {ratio:>7s} "
              f"{r['wall_s']:7.1f} {util}")
    jobs = [r for r in PHASES if r["kind"] == "job" and "text" in r["phase"]]
    if len(jobs) >= 2:
        print(f"first vs second job on the fresh worker (b{jobs[0]['batch']}): "
              f"{jobs[0]['wall_s']:.1f} s vs {jobs[1]['wall_s']:.1f} s wall, "
              f"{jobs[0]['samples_per_s']} vs {jobs[1]['samples_per_s']} samples/s")
    if not samples:
        print("(no GPU samples: nvidia-smi absent or --gpu-log not given)")
    (args.work / "gpu_check.json").write_text(json.dumps(PHASES, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda | cpu (plain loop and recipe)")
    p.add_argument("--worker-device", default="auto", help="ADAPT_WORKER_DEVICE for the service")
    p.add_argument("--work", type=Path, required=True, help="an empty scratch directory")
    p.add_argument("--gpu-log", type=Path, help="gpu_check.sh's nvidia-smi samples")
    p.add_argument("--batches", default="16,64")
    p.add_argument("--text-n", type=int, default=3200, help="training reviews per run")
    p.add_argument("--heldout-n", type=int, default=500)
    p.add_argument("--images", type=int, default=2000, help="synthetic images (0: no image job)")
    p.add_argument("--port", type=int, default=8799)
    p.add_argument("--text-size", default="minilm", choices=["minilm", "base"],
                   help="base: a BERT-base-sized encoder (12 layers, 768 wide) for the text rows")
    p.add_argument("--recipe-only", action="store_true",
                   help="the recipe rows only: fp32 vs bf16, no plain loop, no service")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a CPU dry run (32 reviews, 16 images, batches 8,16)")
    p.add_argument("--only", default="plain,recipe,service",
                   help="the phases to run (plain always runs: the ratios are against it)")
    args = p.parse_args()
    if args.quick:
        args.text_n, args.heldout_n, args.images, args.batches = 32, 16, 16, "8,16"
    args.batches = [int(b) for b in args.batches.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)

    import torch
    args.torch = torch.__version__
    args.gpu_name = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                     else "no CUDA device visible")
    print(f"torch {args.torch}, CUDA available: {torch.cuda.is_available()} ({args.gpu_name}), "
          f"threads {torch.get_num_threads()}", flush=True)
    random.seed(0)
    t0 = time.time()
    files = text_files(args.work, args.text_n, args.heldout_n)
    model_dir = standin_text_model(args.work, args.text_size)
    vision_dir = standin_vision_weights(args.work)
    images = synthetic_images(args.work, args.images) if args.images else None
    print(f"stand-ins and data ready in {time.time() - t0:.1f} s: {args.text_n} reviews, "
          f"{args.images} images", flush=True)
    files = (str(files[0]), str(files[1]), str(model_dir))

    if args.recipe_only:
        for batch in args.batches:
            for precision in ("fp32", "bf16"):
                recipe(args, Path(files[0]), model_dir, batch, f"{args.text_size} {precision}",
                       precision=precision)
        table(args)
        return
    for batch in args.batches:
        plain(args, files, batch)
    for batch in args.batches if "recipe" in args.only else ():
        recipe(args, Path(files[0]), model_dir, batch, "fp32, no bucketing",
               precision="fp32", length_bucketing=0)
        recipe(args, Path(files[0]), model_dir, batch, "defaults")
    if images is not None and "recipe" in args.only:
        from app.ml.vision import weights_filename

        weights = vision_dir / weights_filename("mobilenet_v2")
        image_recipe(args, images, weights, 64, 0, "decoding in the training process")
        image_recipe(args, images, weights, 64, None, "DataLoader workers (auto)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    service(args, Path(files[0]), model_dir, vision_dir, images)
    table(args)


if __name__ == "__main__":
    main()
