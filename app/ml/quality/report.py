"""A dataset's quality report from its examined rows (a Sample): the dataset on its own, or
against another dataset (its validation data). Each report is (summary, details): the summary
is small (counts and warnings, shown in the dataset object), the details list the rows."""
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from app.ml.data import stratified_split
from app.ml.quality import checks

LISTED_GROUPS = 50       # duplicate groups listed in the details (all are counted)
LISTED_MEMBERS = 20      # rows listed per group
LISTED_ROWS = 1000       # label issues / cross-dataset pairs listed
IMBALANCE_WARNING = 3.0  # majority / minority ratio worth a warning


@dataclass
class Sample:
    """The examined rows of one dataset (all of them, or a seeded sample when capped)."""
    refs: list[dict]             # where each row is: {"row": i, "line": n} | {"row": i, "member": m}
    labels: list[str]
    exact: list                  # equal key ⇔ identical example (the stripped text; image sha256)
    near: list | None            # texts: the normalised text (equal ⇔ near-duplicate); images: None
    features: np.ndarray         # frozen-backbone features, one row each
    total: int                   # rows in the dataset
    lengths: dict                # distributions (characters and tokens, or width and height)
    hashes: np.ndarray | None = None  # images: perceptual hashes as ±1 vectors (one bit each)

    @property
    def capped(self) -> bool:
        return len(self.refs) < self.total


def _row(sample: Sample, i: int) -> dict:
    return {**sample.refs[i], "label": sample.labels[i]}


def _group_section(sample: Sample, groups: list[list[int]], **extra) -> dict:
    conflicting = sum(1 for g in groups if len({sample.labels[i] for i in g}) > 1)
    return {"groups": len(groups), "rows": sum(map(len, groups)),
            "redundant_rows": sum(len(g) - 1 for g in groups),
            "conflicting_labels": conflicting, **extra,
            "examples": [[_row(sample, i) for i in g[:LISTED_MEMBERS]]
                         for g in groups[:LISTED_GROUPS]]}


@dataclass(frozen=True)
class Near:
    """When two examples count as near-duplicates. Texts: the same after normalisation, their
    character 5-grams overlapping by ≥ jaccard, or their features' cosine ≥ cosine. Images:
    perceptual hashes (pHash, 64 bits) at most `hamming` bits apart — the features of a frozen
    ImageNet network are too alike across small or similar images to tell copies apart."""
    cosine: float = 0.97
    jaccard: float = 0.78
    hamming: int = 4

    def describe(self, text: bool) -> str:
        if not text:
            return f"perceptual hashes (pHash, 64 bits) at most {self.hamming} bits apart"
        return ("the same text after folding case, Unicode forms, punctuation and spacing; or "
                f"character 5-grams overlapping by ≥ {self.jaccard} (Jaccard, MinHash LSH); or "
                f"cosine similarity of the base model's features ≥ {self.cosine}")

    @property
    def hash_cosine(self) -> float:
        """The cosine of ±1 hash vectors at `hamming` bits apart (64 bits)."""
        return 1.0 - 2.0 * self.hamming / 64


def _similar(sample: Sample, other: Sample | None,
             near: Near) -> list[tuple[int, int, str, float]]:
    """(i, j, found by, similarity) of near pairs by similarity: hashes (images), or features
    and character 5-grams (texts); within `sample` (i < j) when other is None."""
    if sample.hashes is not None:
        return [(i, j, "perceptual hash", round(64 * (1 - c) / 2))
                for i, j, c in checks.similar_pairs(sample.hashes, None if other is None
                                                    else other.hashes,
                                                    threshold=near.hash_cosine - 1e-6)]
    pairs = [(i, j, "characters", jac) for i, j, jac in checks.minhash_pairs(
        sample.near, None if other is None else other.near, threshold=near.jaccard)]
    return pairs + [(i, j, "features", round(c, 4)) for i, j, c in checks.similar_pairs(
        sample.features, None if other is None else other.features, threshold=near.cosine)]


def _near_edges(sample: Sample, near: Near) -> list[tuple[int, int]]:
    edges = [(i, j) for i, j, _, _ in _similar(sample, None, near)]
    for keys in (sample.exact, sample.near):
        for group in checks.same_key_groups(keys or []):
            edges += [(group[0], other) for other in group[1:]]
    return edges


def _split_leaks(sample: Sample, groups: list[list[int]], names: list[str],
                 split: tuple[float, int]) -> dict | None:
    """Groups with copies on both sides of a job's seeded stratified validation_split (only
    when every row was examined: the split is over the whole dataset)."""
    if sample.capped:
        return None
    index = {name: i for i, name in enumerate(names)}
    _, val = stratified_split([index[label] for label in sample.labels], *split)
    val = set(val)
    leaking = [g for g in groups if any(i in val for i in g) and not all(i in val for i in g)]
    return {"validation_split": split[0], "seed": split[1], "groups": len(leaking),
            "validation_rows": sum(1 for g in leaking for i in g if i in val)}


def _label_section(sample: Sample, found: checks.LabelIssues | None, names: list[str]) -> dict:
    if found is None:
        return {"count": None, "skipped": "too few rows: at least 10 rows in 2 classes of 2 "
                                          "or more rows each are needed"}
    return {"method": "cleanlab.filter.find_label_issues on out-of-fold probabilities of a "
                      f"logistic regression ({found.folds}-fold, stratified) on the frozen "
                      "base model's features",
            "examined": found.examined, "folds": found.folds, "count": len(found.rows),
            "share": round(len(found.rows) / max(found.examined, 1), 4),
            "rows": [{**_row(sample, i), "suggested": names[s], "quality": q}
                     for i, s, q in zip(found.rows, found.suggested, found.quality,
                                        strict=True)][:LISTED_ROWS]}


def own_report(sample: Sample, names: list[str], class_counts: dict[str, int], *,
               near: Near = Near(), split: tuple[float, int] = (0.1, 42),
               max_tokens: int | None = None) -> tuple[dict, dict]:
    """(summary, details) of one dataset: duplicates within it, class balance, lengths, label
    issues. `names` are the dataset's labels in index order."""
    exact = checks.same_key_groups(sample.exact)
    all_groups = checks.components(len(sample.refs), _near_edges(sample, near))
    near_groups = [g for g in all_groups if len({sample.exact[i] for i in g}) > 1]  # not copies
    index = {name: i for i, name in enumerate(names)}
    found = checks.label_issues(sample.features, [index[label] for label in sample.labels])
    details = {
        "examined": {"rows": len(sample.refs), "of": sample.total, "capped": sample.capped},
        "duplicates": {
            "exact": _group_section(sample, exact),
            "near": _group_section(sample, near_groups,
                                   method=near.describe(sample.near is not None)),
            # rows that are a copy (exact or near) of an earlier row: what removing them leaves
            "redundant_rows": sum(len(g) - 1 for g in all_groups),
            "validation_split_leaks": _split_leaks(sample, all_groups, names, split)},
        "class_balance": checks.class_balance(class_counts),
        "lengths": sample.lengths,
        "label_issues": _label_section(sample, found, names)}
    return _own_summary(details, max_tokens), details


def _own_summary(d: dict, max_tokens: int | None) -> dict:
    dup, balance, issues = d["duplicates"], d["class_balance"], d["label_issues"]
    leaks = dup["validation_split_leaks"]
    summary = {"examined_rows": d["examined"]["rows"], "total_rows": d["examined"]["of"],
               "capped": d["examined"]["capped"],
               "exact_duplicate_groups": dup["exact"]["groups"],
               "near_duplicate_groups": dup["near"]["groups"],
               "redundant_rows": dup["redundant_rows"],
               "validation_split_leak_groups": leaks["groups"] if leaks else None,
               "label_issues": issues["count"],
               "imbalance_ratio": balance["imbalance_ratio"]}
    warnings = []
    if summary["capped"]:
        warnings.append(f"Only a seeded sample of {summary['examined_rows']} of "
                        f"{summary['total_rows']} rows was examined (ADAPT_QUALITY_MAX_ROWS, "
                        "ADAPT_QUALITY_MAX_IMAGES).")
    for kind in ("exact", "near"):
        if (section := dup[kind])["groups"]:
            warnings.append(f"{section['groups']} group(s) of {kind} duplicates "
                            f"({section['rows']} rows; {section['conflicting_labels']} with "
                            "different labels).")
    if leaks and leaks["groups"]:
        warnings.append(f"With validation_split {leaks['validation_split']} (seed "
                        f"{leaks['seed']}), {leaks['groups']} duplicate group(s) have copies in "
                        f"training and validation: {leaks['validation_rows']} validation row(s) "
                        "are seen in training.")
    if balance["imbalance_ratio"] >= IMBALANCE_WARNING:
        warnings.append(f"Classes are imbalanced: {balance['majority']!r} has "
                        f"{balance['imbalance_ratio']:g}× the rows of {balance['minority']!r}.")
    if issues["count"]:
        warnings.append(f"{issues['count']} row(s) ({issues['share']:.1%}) may be mislabelled "
                        "(label_issues lists them, most likely first).")
    tokens = d["lengths"].get("tokens") or {}
    if max_tokens and tokens.get("over_max_length"):
        warnings.append(f"{tokens['over_max_length']} text(s) are longer than {max_tokens} "
                        "tokens (the default max_length): a job truncates them.")
    return {**summary, "warnings": warnings}


def _across_pairs(sample: Sample, against: Sample,
                  near: Near) -> dict[tuple[int, int], tuple[str, str, float]]:
    """(row, against row) → (kind, found by, similarity), the strongest finding of each pair."""
    found: dict[tuple[int, int], tuple[str, str, float]] = {}
    for keys, other, kind, by in ((sample.exact, against.exact, "exact", "identical"),
                                  (sample.near, against.near, "near", "normalised text")):
        index = defaultdict(list)
        for i, key in enumerate(keys or []):
            index[key].append(i)
        for j, key in enumerate(other or []):
            for i in index.get(key, ()):
                found.setdefault((i, j), (kind, by, 1.0))
    for i, j, by, similarity in _similar(sample, against, near):
        found.setdefault((i, j), ("near", by, similarity))
    return found


def across_report(sample: Sample, against: Sample, *, near: Near = Near()) -> tuple[dict, dict]:
    """(summary, details) of duplicates between a dataset and another (its validation data):
    every pair of rows, one from each, that is identical or near-identical."""
    pairs = _across_pairs(sample, against, near)
    ordered = sorted(pairs.items(), key=lambda p: (p[1][0] != "exact", p[0]))
    listed = [{"kind": kind, "by": by, "similarity": sim, "row": _row(sample, i),
               "against_row": _row(against, j)} for (i, j), (kind, by, sim) in ordered]
    counts = {kind: sum(1 for k, _, _ in pairs.values() if k == kind)
              for kind in ("exact", "near")}
    against_rows = len({j for _, j in pairs})
    conflicting = sum(1 for i, j in pairs if sample.labels[i] != against.labels[j])
    details = {"examined": {"rows": len(sample.refs), "of": sample.total,
                            "against_rows": len(against.refs), "against_of": against.total,
                            "capped": sample.capped or against.capped},
               "method": near.describe(sample.near is not None), "exact_pairs": counts["exact"],
               "near_pairs": counts["near"], "against_rows_with_duplicates": against_rows,
               "conflicting_labels": conflicting, "pairs": listed[:LISTED_ROWS]}
    warnings = []
    if details["examined"]["capped"]:
        warnings.append("Only a seeded sample of each dataset was examined "
                        "(ADAPT_QUALITY_MAX_ROWS, ADAPT_QUALITY_MAX_IMAGES).")
    if against_rows:
        warnings.append(f"{against_rows} row(s) of the other dataset have an exact or near "
                        "copy in this one: used as validation data, they were seen in training.")
    summary = {"examined_rows": len(sample.refs), "against_examined_rows": len(against.refs),
               "capped": details["examined"]["capped"], "exact_pairs": counts["exact"],
               "near_pairs": counts["near"], "against_rows_with_duplicates": against_rows,
               "conflicting_labels": conflicting, "warnings": warnings}
    return summary, details
