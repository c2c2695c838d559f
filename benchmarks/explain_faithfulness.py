"""Are the explanations faithful to the model? ERASER's comprehensiveness, for texts and images,
against random erasure of the same amount; and the cost of explaining beside predicting.

    .venv/bin/python benchmarks/explain_faithfulness.py [--texts 500] [--images 500] [--steps 8]
        [--only texts|images]

Everything goes through the service as a user runs it (`adapt-serve`: the API and a real worker,
embedded default, temporary data directory), over loopback HTTP:

- Text: a MiniLM (`minilm-l6-v2`) `head` model trained on tests/fixtures/rotten_tomatoes/train.csv;
  --texts held-out reviews from heldout.csv (no run trained on them) are explained
  (POST /explain, integrated gradients in --steps steps, toward the predicted label). For each
  review the top 20 % of its words by attribution are deleted, and, separately, 20 % of its words
  chosen at random (seeded); comprehensiveness = the mean drop of the originally predicted
  label's probability (POST /predict on the erased texts). Higher = the explanation found the
  words the prediction rests on.
- Images: a MobileNetV2 `head` model trained on tests/fixtures/digits/digits-train.zip (64 px);
  --images held-out digits from digits-heldout.zip explained (integrated gradients from a blurred
  copy, --steps steps, heatmaps at the image's 32×32); the 20 % of pixels with the highest heatmap values are replaced by a blurred copy of
  the image, against 20 % random pixels, and against 20 % random 4×4 blocks (the digits' own
  pixels are 4×4 blocks: erasing whole blocks is the fairer random control).
- Latency: POST /explain (texts: the server's default steps) vs POST /predict with 1 and 16
  inputs per request, median of repeats, on the same models, one request at a time.
"""
import argparse
import base64
import csv
import io
import random
import signal
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import RT, ROOT, call, run_job, serve, upload  # noqa: E402

DIGITS = ROOT / "tests" / "fixtures" / "digits"
FRACTION = 0.2
BATCH = 16


def batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i: i + size]


def explain_all(base: str, model: str, inputs: list, **options) -> list[dict]:
    out = []
    for chunk in batched(inputs, BATCH):
        out += call(base, f"/v1/models/{model}/explain",
                    {"inputs": chunk, **options})["explanations"]
    return out


def probability_of(base: str, model: str, inputs: list, labels: list[str]) -> list[float]:
    """Each input's probability of its label (labels[i]), from predict with every label's score."""
    probs = []
    for chunk, chunk_labels in zip(batched(inputs, 128), batched(labels, 128)):
        preds = call(base, f"/v1/models/{model}/predict", {"inputs": chunk, "top_k": 1000})
        for p, label in zip(preds["predictions"], chunk_labels, strict=True):
            probs.append(next(t["score"] for t in p["top"] if t["label"] == label))
    return probs


def erase_words(text: str, words: list[dict], drop: set[int]) -> str:
    kept = [w["word"] for i, w in enumerate(words) if i not in drop]
    return " ".join(kept) if kept else "."


def text_figures(base: str, n: int, steps: int, rng: random.Random) -> tuple[dict, str]:
    ds = upload(base, RT / "train.csv")
    job = run_job(base, {"base_model": "minilm-l6-v2", "training_dataset": ds["id"],
                         "method": "head", "seed": 0})
    model = job["model"]
    rows = list(csv.DictReader(open(RT / "heldout.csv", encoding="utf-8")))[:n]
    texts = [r["text"] for r in rows]
    t0 = time.perf_counter()
    explained = explain_all(base, model, texts, steps=steps)
    seconds = time.perf_counter() - t0
    labels = [e["label"] for e in explained]
    top_erased, random_erased = [], []
    for text, e in zip(texts, explained, strict=True):
        words = e["words"]
        k = max(1, round(FRACTION * len(words)))
        by_score = sorted(range(len(words)), key=lambda i: -words[i]["score"])
        top_erased.append(erase_words(text, words, set(by_score[:k])))
        random_erased.append(erase_words(text, words, set(rng.sample(range(len(words)), k))))
    before = [e["score"] for e in explained]
    after_top = probability_of(base, model, top_erased, labels)
    after_random = probability_of(base, model, random_erased, labels)
    accuracy = sum(e["label"] == r["label"] for e, r in zip(explained, rows)) / len(rows)
    return {"n": len(texts), "accuracy": accuracy, "explain_s": seconds,
            "top": float(np.mean(np.subtract(before, after_top))),
            "random": float(np.mean(np.subtract(before, after_random)))}, model


def png_b64(img: Image.Image) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"image_base64": base64.b64encode(buf.getvalue()).decode()}


def blurred_where(img: Image.Image, mask: np.ndarray) -> Image.Image:
    """The image with the masked pixels replaced by a blurred copy's."""
    pixels = np.asarray(img).copy()
    blur = np.asarray(img.filter(ImageFilter.GaussianBlur(radius=4)))
    pixels[mask] = blur[mask]
    return Image.fromarray(pixels)


def image_figures(base: str, n: int, steps: int, rng: random.Random) -> tuple[dict, str]:
    ds = upload(base, DIGITS / "digits-train.zip")
    job = run_job(base, {"base_model": "mobilenet-v2-imagenet", "training_dataset": ds["id"],
                         "method": "head", "seed": 0,
                         "hyperparameters": {"image_size": 64, "epochs": 4, "learning_rate": 3e-3}})
    model = job["model"]
    with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as zf:
        names = sorted(random.Random(0).sample(
            [m for m in zf.namelist() if m.endswith(".png")], n))
        images = [Image.open(io.BytesIO(zf.read(m))).convert("RGB") for m in names]
        truth = [m.split("/")[0] for m in names]
    t0 = time.perf_counter()
    explained = explain_all(base, model, [png_b64(img) for img in images], steps=steps)
    seconds = time.perf_counter() - t0
    labels = [e["label"] for e in explained]
    erased = {"top": [], "random pixels": [], "random 4x4 blocks": []}
    np_rng = np.random.default_rng(rng.randrange(1 << 30))
    for img, e in zip(images, explained, strict=True):
        heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(e["heatmap"]["png_base64"]))),
                          dtype=np.float64)
        h, w = heat.shape
        k = round(FRACTION * h * w)
        order = np.lexsort((np_rng.random(h * w), -heat.ravel()))  # ties broken at random
        top = np.zeros(h * w, bool)
        top[order[:k]] = True
        rand = np.zeros(h * w, bool)
        rand[np_rng.choice(h * w, k, replace=False)] = True
        blocks = np.zeros((h // 4, w // 4), bool)
        blocks.ravel()[np_rng.choice(blocks.size, round(FRACTION * blocks.size), replace=False)] = True
        erased["top"].append(blurred_where(img, top.reshape(h, w)))
        erased["random pixels"].append(blurred_where(img, rand.reshape(h, w)))
        erased["random 4x4 blocks"].append(blurred_where(img, np.kron(blocks, np.ones((4, 4), bool))))
    before = [e["score"] for e in explained]
    drops = {name: float(np.mean(np.subtract(before, probability_of(
        base, model, [png_b64(i) for i in imgs], labels)))) for name, imgs in erased.items()}
    accuracy = sum(e["label"] == t for e, t in zip(explained, truth)) / len(truth)
    return {"n": len(images), "accuracy": accuracy, "explain_s": seconds, **drops}, model


def latency(base: str, model: str, inputs: list, repeats: int) -> dict:
    """Median seconds of one request, explain and predict, with 1 and 16 inputs (explaining 16
    runs half the repeats, at least 3)."""
    out = {}
    for route in ("predict", "explain"):
        for size in (1, BATCH):
            call(base, f"/v1/models/{model}/{route}", {"inputs": inputs[:size]})  # warm
            times = []
            for r in range(max(3, repeats // 2) if (route, size) == ("explain", BATCH) else repeats):
                chunk = [inputs[(r * size + i) % len(inputs)] for i in range(size)]
                t0 = time.perf_counter()
                call(base, f"/v1/models/{model}/{route}", {"inputs": chunk})
                times.append(time.perf_counter() - t0)
            out[(route, size)] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=500)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--steps", type=int, default=8, help="integrated-gradients steps (texts)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--port", type=int, default=8791)
    ap.add_argument("--only", choices=("texts", "images"), help="one half of the benchmark")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    rng = random.Random(42)
    started = time.perf_counter()
    text = image = None
    lat = {}
    with serve(args.port) as base:
        if args.only != "images":
            text, text_model = text_figures(base, args.texts, args.steps, rng)
            print(f"texts ({time.perf_counter() - started:.0f} s): {text}", flush=True)
            reviews = [r["text"] for r in
                       csv.DictReader(open(RT / "heldout.csv", encoding="utf-8"))][-64:]
            steps = call(base, f"/v1/models/{text_model}/explain", {"inputs": ["a"]})["steps"]
            lat[f"text (MiniLM head, {steps} steps)"] = latency(base, text_model, reviews,
                                                                args.repeats)
        if args.only != "texts":
            image, image_model = image_figures(base, args.images, args.steps, rng)
            print(f"images ({time.perf_counter() - started:.0f} s): {image}", flush=True)
            with zipfile.ZipFile(DIGITS / "digits-heldout.zip") as zf:
                digits = [{"image_base64": base64.b64encode(zf.read(m)).decode()}
                          for m in [m for m in zf.namelist() if m.endswith(".png")][-64:]]
            steps = call(base, f"/v1/models/{image_model}/explain", {"inputs": digits[:1]})["steps"]
            lat[f"image (MobileNetV2 head, {steps} steps)"] = latency(base, image_model, digits,
                                                                      args.repeats)

    print(f"\nComprehensiveness (ERASER): mean drop of the predicted label's probability when "
          f"{FRACTION:.0%} of the input is erased — by attribution vs at random "
          f"(integrated gradients in {args.steps} steps)\n")
    print("| data | held-out inputs | model accuracy | top 20 % by attribution | random 20 % | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    if text:
        print(f"| Rotten Tomatoes reviews, words deleted | {text['n']} | {text['accuracy']:.3f} | "
              f"**{text['top']:.4f}** | {text['random']:.4f} | "
              f"{text['top'] / max(text['random'], 1e-9):.2f}× |")
    for name in ("random pixels", "random 4x4 blocks") if image else ():
        print(f"| digits, pixels blurred (vs {name}) | {image['n']} | {image['accuracy']:.3f} | "
              f"**{image['top']:.4f}** | {image[name]:.4f} | "
              f"{image['top'] / max(image[name], 1e-9):.2f}× |")
    for name, part in (("texts", text), ("images", image)):
        if part:
            print(f"\nExplaining all {name}, {BATCH} per request: {part['explain_s']:.1f} s "
                  f"({part['explain_s'] / part['n'] * 1000:.0f} ms each)")
    print(f"\nLatency of one request (median of {args.repeats}; explaining 16: of "
          f"{max(3, args.repeats // 2)}), one request at a time:\n")
    print("| model | inputs | predict | explain | explain / predict |")
    print("|---|---:|---:|---:|---:|")
    for name, figures in lat.items():
        for size in (1, BATCH):
            p, e = figures[("predict", size)], figures[("explain", size)]
            print(f"| {name} | {size} | {p * 1000:.0f} ms | {e * 1000:.0f} ms | {e / p:.1f}× |")
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
